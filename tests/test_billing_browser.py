"""In Chromium: the desk reads a plan's estimate and records it as given; the patient reads
the same estimate and their payment schedule on a phone."""

from datetime import date
from decimal import Decimal

from django.utils import timezone

from billing.models import ClinicBilling, Fee, GoodFaithEstimate, PaymentOption
from notifications.patient_links import issue_patient_link
from plans.models import CarePlan, PlannedVisit, PlanStatus, Protocol
from tests.conftest import SmallClinic
from tests.page_helpers import front_desk

# The browser and its page, and the skip when Chromium or Playwright is missing.
from tests.test_browser import (  # noqa: F401
    PASSWORD,
    _next_weekday,
    _sign_in,
    _visit,
    browser,
    page,
    pytestmark,
    sync_api,
)


def planned_course(clinic: SmallClinic):
    """Avery's plan of three infusions each followed by integration, priced and coded."""
    ClinicBilling.objects.create(
        clinic=clinic.clinic, payment_option=PaymentOption.INSTALMENTS, instalments=2
    )
    clinic.iv.price, clinic.integration.price = Decimal("475.00"), Decimal("175.00")
    clinic.iv.save(), clinic.integration.save()
    Fee.objects.create(visit_type=clinic.iv, code="96365", add_on_codes="J3490")
    Fee.objects.create(visit_type=clinic.integration, code="90837", typically_reimbursable=True)
    avery = clinic.patient("Avery", "Applewood")
    protocol = Protocol.objects.create(clinic=clinic.clinic, name="IV induction", slug="iv")
    dose_step = protocol.steps.create(position=1, visit_type=clinic.iv, count=3)
    talk_step = protocol.steps.create(position=2, visit_type=clinic.integration, count=3)
    plan = CarePlan.objects.create(
        patient=avery, protocol=protocol, start_date=date.today(), status=PlanStatus.ACTIVE
    )
    day = timezone.localdate(timezone=clinic.clinic.tz)
    for n in range(3):
        day = _next_weekday(day, 2)
        dose = _visit(clinic, avery, "dosing", day, "09:00")
        talk = _visit(clinic, avery, "integration", _next_weekday(day, 1), "14:00")
        for step, visit in ((dose_step, dose), (talk_step, talk)):
            PlannedVisit.objects.create(care_plan=plan, visit=visit, step=step, occurrence=n + 1)
    return avery, plan


def test_the_desk_reads_the_estimate_and_records_it_as_given(
    page,  # noqa: F811
    live_server,
    transactional_db,
):
    clinic = SmallClinic()
    avery, plan = planned_course(clinic)
    _sign_in(page, live_server, front_desk(password=PASSWORD).username)
    page.goto(f"{live_server.url}/desk/patients/{avery.pk}/")
    page.get_by_role("link", name="Costs and account").click()
    estimate = page.get_by_role("table", name="Estimate, visit by visit")
    assert estimate.get_by_role("row").count() == 7  # a header and six visits
    assert "96365 J3490" in estimate.inner_text() and "90837" in estimate.inner_text()
    totals = page.locator("dl.estimate-totals").inner_text()
    assert "1425.00 USD" in totals and "525.00 USD" in totals and "1950.00 USD" in totals
    assert page.get_by_role("table", name="Payment schedule").get_by_role("row").count() == 3
    page.get_by_label("Given").select_option(label="Printed, in person")
    page.get_by_role("button", name="Record the estimate as given now").click()
    assert "kept on record" in page.get_by_role("status").inner_text()
    assert GoodFaithEstimate.objects.get(care_plan=plan).total == Decimal("1950.00")
    page.get_by_role("link", name="Printable Good Faith Estimate").click()
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text("Good Faith Estimate")
    assert "not a contract" in page.content()


def test_a_patient_reads_their_estimate_and_schedule_on_a_phone(
    browser,  # noqa: F811
    live_server,
    transactional_db,
):
    clinic = SmallClinic()
    avery, _ = planned_course(clinic)
    link = issue_patient_link(avery).replace("http://localhost:8000", live_server.url)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    phone = context.new_page()
    phone.goto(link)
    phone.get_by_role("link", name="Your costs and payment schedule").tap()
    sync_api.expect(phone.get_by_role("heading", level=1)).to_have_text("Your costs")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    schedule = phone.get_by_role("table", name="Payment schedule").inner_text()
    assert schedule.count("975.00 USD") == 2
    assert "1950.00 USD" in phone.locator("dl.estimate-totals").inner_text()
    phone.locator("summary", has_text="Your right to a Good Faith Estimate").tap()
    sync_api.expect(phone.get_by_text("$400 more", exact=False)).to_be_visible()
    context.close()
