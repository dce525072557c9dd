"""In Chromium: a desk user of two clinics switches in the header and sees only the chosen one."""

from django.utils import timezone

from tests.conftest import SmallClinic
from tests.page_helpers import front_desk

# The browser and its page, and the skip when Chromium or Playwright is missing.
from tests.test_browser import (  # noqa: F401
    PASSWORD,
    _sign_in,
    _visit,
    browser,
    page,
    pytestmark,
)


def test_a_desk_user_switches_clinic_and_the_day_shows_only_the_chosen_ones_visits(
    page,  # noqa: F811
    live_server,
    transactional_db,
):
    new_york, denver = SmallClinic(), SmallClinic("America/Denver")
    denver.clinic.name = "Riverside Wellness Denver"
    denver.clinic.save()
    user = front_desk(password=PASSWORD)  # a member of both
    for clinic, (first, last) in (
        (new_york, ("Avery", "Applewood")),
        (denver, ("Casey", "Coldwater")),
    ):
        today = timezone.localdate(timezone=clinic.clinic.tz)  # each desk's own today
        _visit(clinic, clinic.patient(first, last), "integration", today, "11:00")

    _sign_in(page, live_server, user.username)
    assert page.url.endswith("/desk/")
    schedule = page.locator("main")
    assert "Applewood" in schedule.inner_text() and "Coldwater" not in schedule.inner_text()

    page.get_by_label("Clinic", exact=True).select_option(label="Riverside Wellness Denver")
    page.get_by_role("button", name="Switch").click()
    page.wait_for_url(f"{live_server.url}/desk/")
    assert page.get_by_label("Clinic", exact=True).input_value() == str(denver.clinic.pk)
    assert "Riverside Wellness Denver" in page.locator(".site-name").inner_text()
    assert "Coldwater" in schedule.inner_text() and "Applewood" not in schedule.inner_text()
