"""The front desk adds a patient and books them a visit in a real Chromium, the admin never opened.

The same setup as tests/test_browser.py (its ``browser`` and ``page`` fixtures:
Debian's /usr/bin/chromium through Playwright, no browser download); skipped,
saying why, when either is missing.
"""

import shutil
from datetime import datetime

import pytest
from django.utils import timezone

from scheduler.models import AuditAction, AuditEvent, Patient, Visit, VisitStatus
from tests.conftest import SmallClinic
from tests.page_helpers import front_desk
from tests.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    PASSWORD,
    _sign_in,
    browser,
    page,
    sync_api,
)

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


def _fits_the_screen(screen) -> bool:
    return screen.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_front_desk_adds_a_patient_and_books_a_visit_from_the_times_offered(
    page,  # noqa: F811 (the fixture)
    live_server,
    transactional_db,
):
    clinic = SmallClinic()
    user = front_desk(password=PASSWORD)
    today = timezone.localdate(timezone=clinic.clinic.tz)
    _sign_in(page, live_server, user.username)
    page.wait_for_url("**/desk/")

    page.get_by_role("navigation", name="Front desk").get_by_role("link", name="Patients").click()
    page.get_by_role("link", name="New patient").click()
    page.get_by_label("First name").fill("Robin")
    page.get_by_label("Last name").fill("Rowan")
    page.get_by_label("Date of birth").fill("1979-11-23")
    page.get_by_label("Mobile", exact=True).fill("555-01")
    page.get_by_label("Email", exact=True).fill("robin.rowan@example.com")
    page.get_by_label("Agreed to texts on").fill(today.isoformat())
    page.get_by_label("Text consent given by").select_option(label="Verbal, recorded by staff")
    page.get_by_role("button", name="Save patient").click()

    # Refused next to the field, and everything typed is still there.
    assert "Nothing was saved" in page.get_by_role("alert").inner_text()
    mobile = page.get_by_label("Mobile", exact=True)
    assert "555-01 is not a valid phone number." in page.locator(".field", has=mobile).inner_text()
    assert page.get_by_label("First name").input_value() == "Robin"
    assert page.get_by_label("Date of birth").input_value() == "1979-11-23"
    assert page.get_by_label("Agreed to texts on").input_value() == today.isoformat()
    assert not Patient.objects.filter(last_name="Rowan").exists()

    mobile.fill("(212) 555-0147")
    page.get_by_role("button", name="Save patient").click()
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text("Robin Rowan")
    assert "Robin Rowan added." in page.get_by_role("status").inner_text()
    robin = Patient.objects.get(last_name="Rowan")
    assert robin.mobile == "+12125550147" and robin.can_receive_sms
    assert AuditEvent.objects.filter(action=AuditAction.ADDED_PATIENT, patient=robin).exists()

    page.get_by_role("link", name="Book a visit").click()
    page.get_by_label("Visit type").select_option(label="Integration (50 min: therapist)")
    page.get_by_role("button", name="Show free times").click()
    time = page.get_by_label("Time", exact=True)
    option = time.locator("option[value]:not([value=''])").nth(1)
    chosen, label = option.get_attribute("value"), option.inner_text()
    time.select_option(chosen)
    assert "ride home" not in page.content().lower()  # asked of doses only
    page.get_by_role("button", name="Book visit").click()

    page.wait_for_url(f"**/desk/patients/{robin.pk}/")
    assert "Booked: Integration" in page.get_by_role("status").inner_text()
    visit = Visit.objects.get(patient=robin)
    assert visit.start == datetime.fromisoformat(chosen.split(":", 3)[3])
    assert visit.status == VisitStatus.BOOKED and visit.clinician == clinic.therapist
    start = timezone.localtime(visit.start, clinic.clinic.tz)
    assert label.startswith(f"{start:%H:%M}-")
    upcoming = page.get_by_role("region", name="Upcoming visits (1)")
    assert f"{start:%a %-d %b %Y, %H:%M}" in upcoming.inner_text()
    assert "Integration with Sam Rivers" in upcoming.inner_text()

    # Both pages read on a phone: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (f"/desk/patients/{robin.pk}/edit/", f"/desk/patients/{robin.pk}/book/"):
        page.goto(live_server.url + path)
        assert _fits_the_screen(page), path
    page.get_by_label("Visit type").select_option(label="Iv Infusion (120 min: prescriber)")
    page.get_by_role("button", name="Show free times").click()
    # A new patient's screening is not cleared yet: no dose time, and the rule says why.
    times = page.get_by_role("region", name="Free times for Iv Infusion").inner_text()
    assert "Robin Rowan's screening has not been cleared by a prescriber" in times
    assert page.get_by_role("button", name="Book visit").count() == 0
    assert _fits_the_screen(page)
