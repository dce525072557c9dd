"""Every staff and patient page through axe-core in a real Chromium, and the README's screenshots.

axe-core (bundled by axe-playwright-python) checks each page as its user sees it, on the
demo clinic, with every folded part (``<details>``) opened; a serious or critical finding
on any page fails the test, which lists every page's findings. The same page loads take
the screenshots README shows: into docs/screenshots/ with UPDATE_SCREENSHOTS=1, else into
a temporary directory, so the code that takes them runs on every run without changing the
working tree.

The clock stands on a fixed morning (the server's through time-machine, the pages' scripts
through Playwright's clock), so the demo is seeded the same way and the screenshots show the
same days whenever they are taken. Same browser as tests/test_browser.py: Debian's
/usr/bin/chromium through Playwright, no browser download; skipped, saying why, when either
is missing. Two tests, one per kind of user, each seeding once: a page load costs a second.
"""

import os
import re
import shutil
from base64 import b32decode
from datetime import date, datetime, time, timedelta
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django_otp.oath import totp

from desk.demo import demo_key
from notifications.patient_links import issue_patient_link
from plans.models import CarePlan
from questionnaires import answering, scoring
from questionnaires.models import Instrument, QuestionnaireRequest, SafetyAlert
from scheduler import booking
from scheduler.availability import free_slots
from scheduler.demo import STAFF
from scheduler.models import Clinic, Clinician, Patient, Visit, VisitKind, VisitStatus, VisitType
from tests.conftest import on_one_engine
from tests.score_helpers import answered
from tests.test_browser import CHROMIUM, browser  # noqa: F401 (the fixture)
from waitlist.models import Offer
from waitlist.offers import offer_freed_times, offer_link

axe_playwright = pytest.importorskip(
    "axe_playwright_python.sync_playwright", reason="axe-playwright-python is not installed"
)
pytestmark = [
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
    ),
    # What axe reads is the pages' HTML, the same from either engine.
    on_one_engine("sqlite", "the pages are the same from either engine"),
]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
NEW_YORK = ZoneInfo("America/New_York")
# A Monday morning at the demo clinic (America/New_York); the demo books the next two weeks.
NOW = datetime(2026, 5, 11, 10, 20, tzinfo=NEW_YORK)
# The day the desk's screenshots show: that week's Friday, with the demo's doses.
GRID_DAY = date(2026, 5, 15)
BLOCKING = {"serious", "critical"}
# axe leaves undecided ("needs review") what it cannot compute. For colour contrast that is
# text on a pattern or over other layers (the grids' hatched shading, their hour labels over
# the rulers, the timeline's SVG labels over its lanes): tests/test_colour_contrast.py
# computes those from the CSS. Any other serious or critical rule axe could not decide (an
# aria-describedby naming no element, say) fails here as a violation would.
DECIDED_ELSEWHERE = {"color-contrast"}
SITE_URL = "http://localhost:8000"  # what links are built with in the tests (SITE_URL)


class Audit:
    """axe-core's findings, page by page."""

    def __init__(self):
        self.axe = axe_playwright.Axe()
        self.findings: dict[str, list[str]] = {}

    def check(self, page, name: str) -> None:
        page.wait_for_load_state("load")
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        results = self.axe.run(page).response
        undecided = [
            {**rule, "id": f"{rule['id']} (needs review)"}
            for rule in results["incomplete"]
            if rule["id"] not in DECIDED_ELSEWHERE
        ]
        for rule in results["violations"] + undecided:
            if rule["impact"] not in BLOCKING:
                continue
            where = "; ".join(" ".join(node["target"]) for node in rule["nodes"][:5])
            self.findings.setdefault(name, []).append(
                f"{rule['id']}, {rule['impact']}, {len(rule['nodes'])} nodes: {rule['help']} ({where})"
            )

    def report(self) -> str:
        return "\n".join(
            f"{name}:\n  " + "\n  ".join(lines) for name, lines in self.findings.items()
        )


@pytest.fixture
def audit():
    return Audit()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


@pytest.fixture
def clinic_morning(settings, transactional_db):
    """The server's clock on NOW (moving on from there) and the demo seeded then.

    The server's cookies expire by its clock, in the real clock's past: the browser would
    drop them at once, so here they last as long as the browser instead.
    """
    settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = True
    settings.CSRF_COOKIE_AGE = None
    with time_machine.travel(NOW, tick=True):
        call_command("seed_demo", stdout=StringIO())
        yield Clinic.objects.get(slug="riverside")


def new_page(browser, **options):  # noqa: F811 (the fixture)
    context = browser.new_context(**({"viewport": {"width": 1280, "height": 900}} | options))
    context.set_default_timeout(10_000)
    context.clock.install(time=NOW)
    return context, context.new_page()


def sign_in(page, live_server, username: str) -> None:
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(
        next(member.password for member in STAFF if member.username == username)
    )
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")


def opened(page, address: str) -> None:
    """Go to ``address``: the page itself, not an error or the sign-in page in its place."""
    response = page.goto(address)
    assert response.status == 200, (address, response.status)
    assert urlsplit(page.url).path == urlsplit(address).path, (address, page.url)


def scrolled_to(page, element_id: str):
    """The page scrolled so that the element starts at the top (for a screenshot)."""
    page.locator(f"#{element_id}").evaluate("element => element.scrollIntoView()")
    return page


def busy_day(clinic: Clinic, day: date) -> None:
    """More of the demo's patients booked on ``day`` through the booking rules, every other
    one confirmed: the demo spreads its visits over two weeks, a clinic's day has more."""
    types = {kind.slug: kind for kind in VisitType.objects.filter(clinic=clinic)}
    patients = list(Patient.objects.filter(clinic=clinic).order_by("pk"))
    wanted = [(2, "preparation"), (8, "preparation"), (9, "preparation")]
    wanted += [(13, "screening"), (14, "screening"), (15, "screening")]
    for number, (index, slug) in enumerate(wanted):
        [slot] = free_slots(types[slug], day, day, patient=patients[index], limit=1)
        visit = booking.book_slot(patients[index], types[slug], slot)
        if number % 2:
            booking.confirm(visit)


def scored_course(patient, before: datetime) -> None:
    """PHQ-9 and GAD-7 answered four times over the weeks up to ``before``: the demo has no
    answers of its own yet."""
    for weeks, (phq, gad) in enumerate(((19, 14), (14, 11), (9, 8), (4, 5))):
        when = before - timedelta(weeks=4 - weeks)
        answered(patient, "phq-9", phq, when)
        answered(patient, "gad-7", gad, when + timedelta(minutes=5))


def test_every_staff_page_has_no_serious_accessibility_violation_and_desk_pages_are_photographed(
    browser,  # noqa: F811 (the fixture)
    live_server,
    clinic_morning,
    audit,
    screenshots,
    settings,
):
    clinic = clinic_morning
    busy_day(clinic, GRID_DAY)
    url = live_server.url
    plan = CarePlan.objects.select_related("patient").order_by("pk").first()
    dose = plan.planned_visits.get(visit__visit_type__slug="iv-infusion").visit
    spravato = Visit.objects.filter(
        patient__clinic=clinic, visit_type__slug="intranasal-dosing", status=VisitStatus.COMPLETED
    ).first()
    therapist = Clinician.objects.get(user__username="fenwick")
    integration = VisitType.objects.get(clinic=clinic, slug="integration")
    free = datetime.combine(GRID_DAY, time(14, 0), tzinfo=clinic.tz).isoformat()
    unplanned = Patient.objects.filter(clinic=clinic).order_by("pk")[0]  # screened, no plan
    # A patient of the therapist's with doses, and scores over the weeks before them.
    theirs = Visit.objects.for_clinician(therapist).scheduled().values("patient")
    scored = (
        Visit.objects.filter(patient__in=theirs, visit_type__kind=VisitKind.DOSING)
        .scheduled()
        .order_by("start")[0]
        .patient
    )
    scored_course(scored, NOW)

    context, page = new_page(browser)
    opened(page, url + "/login/")
    audit.check(page, "sign in")
    sign_in(page, live_server, "frontdesk")
    assert page.url.endswith("/desk/")
    audit.check(page, "desk: today")
    # The demo's item-9 answer (questionnaires.demo): its alert as the desk sees it.
    alert = SafetyAlert.objects.get()
    opened(page, f"{url}/desk/alerts/{alert.pk}/")
    assert page.get_by_text("Not acknowledged yet.").count() == 1
    audit.check(page, "safety alert, as the front desk sees it")
    opened(page, f"{url}/desk/day/{GRID_DAY}/")
    scrolled_to(page, "schedule").screenshot(path=screenshots / "desk-day.png")
    audit.check(page, "desk: day by clinician")
    opened(page, f"{url}/desk/day/{GRID_DAY}/?by=room")
    audit.check(page, "desk: day by room")
    opened(page, f"{url}/desk/week/{GRID_DAY}/")
    scrolled_to(page, "week-grid").screenshot(path=screenshots / "desk-week.png")
    audit.check(page, "desk: week, everyone")
    opened(page, f"{url}/desk/week/{GRID_DAY}/?clinician={therapist.pk}")
    audit.check(page, "desk: week, one clinician")
    opened(page, f"{url}/desk/patients/?q=a")
    audit.check(page, "patients: search")
    opened(page, f"{url}/desk/patients/?with={therapist.pk}&at={free.replace('+', '%2B')}&q=a")
    audit.check(page, "patients: search from a free time")
    opened(page, f"{url}/desk/patients/{plan.patient.pk}/")
    assert page.get_by_role("img", name=re.compile("^Timeline of")).count() == 1
    audit.check(page, "patient's desk page, with a care plan's timeline")
    opened(page, f"{url}/desk/patients/{scored.pk}/")
    assert page.get_by_text("visible to the patient's clinicians and clinic admins").count() == 1
    audit.check(page, "patient's desk page, scores not the desk's")
    opened(page, f"{url}/desk/patients/new/")
    audit.check(page, "new patient")
    page.get_by_role("button", name="Save patient").click()
    page.get_by_role("alert").wait_for()
    audit.check(page, "new patient, refused with errors")
    opened(page, f"{url}/desk/patients/{plan.patient.pk}/book/?type={integration.pk}")
    audit.check(page, "book a visit")
    opened(page, f"{url}/desk/visits/{dose.pk}/")
    audit.check(page, "visit")
    opened(page, f"{url}/desk/visits/{dose.pk}/?team=change")
    audit.check(page, "visit, changing who is on the team")
    opened(page, f"{url}/desk/visits/{spravato.pk}/session/")
    audit.check(page, "session record")
    opened(page, f"{url}/desk/visits/{spravato.pk}/rems-form/")
    audit.check(page, "REMS monitoring form")
    opened(page, f"{url}/desk/messages/")
    audit.check(page, "messages")
    opened(page, f"{url}/desk/waitlist/")
    audit.check(page, "waitlist")
    opened(page, f"{url}/desk/plans/new/?patient={unplanned.pk}")
    page.get_by_label("Protocol").select_option(label="IV induction series")
    page.get_by_role("button", name="Propose plan").click()
    course = page.get_by_role("region", name="The course of care, week by week")
    assert course.get_by_role("img", name=re.compile("^Timeline of")).count() == 1
    course.screenshot(path=screenshots / "plan-timeline.png")
    audit.check(page, "new care plan, a proposal shown")
    # Last for the front desk: an authenticator app, then the recovery codes shown once.
    opened(page, f"{url}/account/second-factor/")
    audit.check(page, "second factor: set up")
    key = b32decode(page.locator("#secret").inner_text().replace(" ", ""))
    page.get_by_label("Code the app shows now").fill(f"{totp(key):06d}")
    page.get_by_role("button", name="Turn on").click()
    page.get_by_role("list", name="Recovery codes").wait_for()
    audit.check(page, "second factor: recovery codes")
    context.close()

    context, page = new_page(browser)
    sign_in(page, live_server, "fenwick")
    assert "/login/code/" in page.url
    audit.check(page, "second factor: code at sign-in")
    page.get_by_label("Code").fill(f"{totp(bytes.fromhex(demo_key('fenwick'))):06d}")
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/calendars/mine/")
    scrolled_to(page, "week").screenshot(path=screenshots / "clinician-calendar.png")
    audit.check(page, "clinician's calendar")
    opened(page, f"{url}/desk/scores/")
    audit.check(page, "scores table, a clinician's own patients")
    opened(page, f"{url}/calendars/mine/patients/{scored.pk}/")
    assert page.get_by_role("img", name=re.compile("scores over time")).count() == 2
    audit.check(page, "clinician's page for their patient, score charts")
    context.close()

    context, page = new_page(browser)
    sign_in(page, live_server, "admin")
    page.get_by_label("Code").fill(f"{totp(bytes.fromhex(demo_key('admin'))):06d}")
    page.get_by_role("button", name="Verify").click()
    page.wait_for_load_state("load")
    opened(page, f"{url}/desk/patients/{scored.pk}/")
    charts = page.get_by_role("region", name="Questionnaire scores")
    assert charts.get_by_role("img", name=re.compile("scores over time")).count() == 2
    charts.locator("figure").last.screenshot(path=screenshots / "score-chart.png")
    audit.check(page, "patient's desk page, score charts (clinic admin)")
    opened(page, f"{url}/desk/scores/?instrument=phq-9")
    audit.check(page, "scores table, every patient, one questionnaire")
    opened(page, f"{url}/desk/alerts/{alert.pk}/")
    assert page.get_by_role("button", name="Acknowledge").count() == 1
    audit.check(page, "safety alert with the answers and the acknowledgement (clinic admin)")
    context.close()

    # Last, as it pauses sign-in from this address: a wrong password past the limit.
    settings.AXES_FAILURE_LIMIT = 1
    context, page = new_page(browser)
    opened(page, url + "/login/")
    page.get_by_label("Username").fill("frontdesk")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Sign-in paused").wait_for()
    audit.check(page, "sign-in paused")
    context.close()

    assert audit.findings == {}, audit.report()


def test_every_patient_page_has_no_serious_accessibility_violation_on_a_320_px_phone(
    browser,  # noqa: F811 (the fixture)
    live_server,
    clinic_morning,
    audit,
    screenshots,
):
    url = live_server.url
    plan = CarePlan.objects.select_related("patient").order_by("pk").first()
    dose = plan.planned_visits.get(visit__visit_type__slug="iv-infusion").visit
    later = plan.planned_visits.filter(visit__visit_type__kind=VisitKind.INTEGRATION)[0].visit
    link = issue_patient_link(plan.patient).replace(SITE_URL, url)

    context, phone = new_page(
        browser,
        viewport={"width": 320, "height": 640},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    opened(phone, link)
    assert phone.get_by_role("heading", level=2).first.inner_text() == "Your next visit"
    phone.screenshot(path=screenshots / "patient-phone.png")
    audit.check(phone, "patient page")
    opened(phone, f"{link}visits/{later.pk}/move/")
    audit.check(phone, "patient: change time, none free in the plan's window")
    opened(phone, f"{link}visits/{later.pk}/cancel/")
    assert phone.get_by_role("button", name="Cancel my visit").is_visible()
    audit.check(phone, "patient: cancel")
    opened(phone, f"{link}waitlist/")
    audit.check(phone, "patient: join the waitlist")
    # Another patient's link: their preparation session has times to move to.
    preparation = Visit.objects.filter(visit_type__slug="preparation").order_by("start")[0]
    other = issue_patient_link(preparation.patient).replace(SITE_URL, url)
    opened(phone, f"{other}visits/{preparation.pk}/move/")
    audit.check(phone, "patient: change time")
    phone.locator("ul.times a").first.tap()
    phone.get_by_role("button", name="Move my visit").wait_for()
    audit.check(phone, "patient: change time, a time chosen")
    # Questions before the next visit: the card, one question (and one left unanswered), the
    # review, and the page after answers that call for a clinician today.
    next_visit = Visit.objects.for_patient(plan.patient).scheduled().upcoming().order_by("start")[0]
    phq9 = QuestionnaireRequest.objects.create(
        patient=plan.patient,
        visit=next_visit,
        instrument=Instrument.objects.get(code="phq-9"),
        opens_at=NOW,
        closes_at=next_visit.end,
    )
    opened(phone, link)
    assert phone.get_by_role("region", name="Questions before your visit").is_visible()
    audit.check(phone, "patient page with questions to answer")
    opened(phone, f"{link}questions/")
    audit.check(phone, "patient: questions before a visit")
    opened(phone, f"{link}questions/{phq9.pk}/")
    audit.check(phone, "patient: a question")
    phone.get_by_role("button", name="Next").click()
    phone.get_by_role("alert").wait_for()
    audit.check(phone, "patient: a question, left unanswered")
    for item in scoring.items(phq9.instrument.questionnaire)[:9]:
        answering.save_answer(phq9, item.link_id, item.options[1].code)
    opened(phone, f"{link}questions/{phq9.pk}/review/")
    audit.check(phone, "patient: check the answers")
    phone.get_by_role("button", name="Send my answers").click()
    phone.get_by_role("link", name="Call 988").wait_for()
    audit.check(phone, "patient: answers sent, crisis resources")
    opened(phone, f"{url}/p/")
    audit.check(phone, "patient: entrance without a link")
    # The dose given up goes to the demo's waitlist: the first patient's offer.
    booking.cancel(dose, reason="Unwell")
    offer_freed_times()
    offer = Offer.objects.order_by("pk").first()
    opened(phone, offer_link(offer).replace(SITE_URL, url))
    assert phone.get_by_role("button", name="Take this time").is_visible()
    audit.check(phone, "waitlist offer")
    context.close()

    assert audit.findings == {}, audit.report()
