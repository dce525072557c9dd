"""The three users' pages in a real Chromium: front desk, keyboard-only sign-in, a patient's phone.

Runs Debian's /usr/bin/chromium through Playwright (no browser download);
skipped, saying why, when either is missing. .ci/run installs chromium.
"""

import os
import shutil
from datetime import date, datetime, time, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications.patient_links import issue_patient_link
from plans.models import CarePlan
from scheduler.models import Clinic, Patient, Visit, VisitStatus
from tests.conftest import SmallClinic
from tests.page_helpers import front_desk

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "browser-test-pass-2030"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; Django would then
    # refuse the tests' own ORM calls as "async-unsafe". They are not: the loop
    # only drives the browser, and the server runs in its own thread.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def _next_weekday(day: date, ahead: int) -> date:
    day += timedelta(days=ahead)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _visit(clinic: SmallClinic, patient, kind: str, day: date, hh_mm: str) -> Visit:
    """Written directly: today's visit may lie in hours already gone, which booking refuses."""
    start = datetime.combine(day, time.fromisoformat(hh_mm), tzinfo=clinic.clinic.tz)
    dosing = kind == "dosing"
    return Visit.objects.create(
        patient=patient,
        visit_type=clinic.iv if dosing else clinic.integration,
        clinician=clinic.prescriber if dosing else clinic.therapist,
        room=clinic.room1 if dosing else None,
        start=start,
        end=start + (clinic.iv if dosing else clinic.integration).duration,
    )


def _sign_in(page, live_server, username):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_front_desk_sees_a_flagged_dosing_visit_moves_one_visit_and_cancels_another(
    page, live_server, transactional_db
):
    clinic = SmallClinic()
    user = front_desk(password=PASSWORD)
    today = timezone.localdate(timezone=clinic.clinic.tz)
    avery = clinic.patient("Avery", "Applewood")
    _visit(clinic, avery, "dosing", today, "10:00")
    to_move = _visit(clinic, avery, "integration", _next_weekday(today, 2), "11:00")
    to_cancel = _visit(clinic, avery, "integration", _next_weekday(today, 4), "15:00")

    _sign_in(page, live_server, user.username)
    assert page.url.endswith("/desk/")
    attention = page.get_by_role("region", name="Needs attention (1)")
    assert "No ride home" in attention.inner_text()

    attention.get_by_role("link", name="Avery Applewood", exact=False).click()
    page.get_by_role("link", name="Avery Applewood").click()
    sync_api.expect(page.get_by_role("heading", level=1)).to_have_text("Avery Applewood")
    assert "Screening" in page.content() and "cleared" in page.content()

    page.goto(f"{live_server.url}/desk/visits/{to_move.pk}/")
    select = page.get_by_label("New time", exact=False)
    option = select.locator("option[value]:not([value=''])").nth(2)
    chosen = option.get_attribute("value")
    select.select_option(chosen)
    page.get_by_role("button", name="Move visit").click()
    assert page.get_by_role("status").inner_text().strip() == "Moved."
    to_move.refresh_from_db()
    assert to_move.start == datetime.fromisoformat(chosen.split(":", 3)[3])
    assert to_move.sequence == 1

    page.goto(f"{live_server.url}/desk/visits/{to_cancel.pk}/")
    page.get_by_label("Reason").fill("Patient is travelling")
    page.get_by_role("button", name="Cancel visit").click()
    assert "Cancelled." in page.get_by_role("status").inner_text()
    to_cancel.refresh_from_db()
    assert to_cancel.status == VisitStatus.CANCELLED
    assert to_cancel.cancellation_reason == "Patient is travelling"


def test_a_patient_confirms_their_visit_on_a_phone(browser, live_server, transactional_db):
    clinic = SmallClinic()
    avery = clinic.patient("Avery", "Applewood")
    visit = _visit(clinic, avery, "integration", _next_weekday(timezone.localdate(), 1), "10:00")
    link = issue_patient_link(avery).replace("http://localhost:8000", live_server.url)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(10_000)
    phone = context.new_page()
    phone.goto(link)
    assert "Hello Avery" in phone.content()
    # Readable on a phone: nothing wider than the screen.
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone.get_by_role("button", name="Confirm this visit").tap()
    sync_api.expect(phone.get_by_role("status")).to_contain_text("your visit is confirmed")
    visit.refresh_from_db()
    assert visit.status == VisitStatus.CONFIRMED
    context.close()


def test_a_patient_moves_one_visit_and_cancels_another_on_a_phone(
    browser, live_server, transactional_db
):
    clinic = SmallClinic()
    avery = clinic.patient("Avery", "Applewood")
    to_move = _visit(clinic, avery, "integration", _next_weekday(timezone.localdate(), 3), "10:00")
    to_cancel = _visit(
        clinic, avery, "integration", _next_weekday(timezone.localdate(), 6), "15:00"
    )
    link = issue_patient_link(avery).replace("http://localhost:8000", live_server.url)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(10_000)
    phone = context.new_page()
    phone.goto(link)
    phone.get_by_role("article").first.get_by_role("link", name="Change time").tap()
    sync_api.expect(phone.get_by_role("heading", level=1)).to_have_text("Change your visit")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    choice = phone.locator("ul.times a").nth(3)
    chosen_text = choice.inner_text()
    choice.tap()
    sync_api.expect(phone.get_by_role("heading", level=2)).to_contain_text(chosen_text)
    phone.get_by_role("button", name="Move my visit").tap()
    sync_api.expect(phone.get_by_role("status")).to_contain_text("Your visit is moved to")
    to_move.refresh_from_db()
    local = timezone.localtime(to_move.start, clinic.clinic.tz)
    assert local.strftime("%-I:%M %p") == chosen_text and to_move.moves_by_patient == 1

    # The later visit is folded: open it first.
    phone.locator(f"#later-{to_cancel.pk} summary").tap()
    phone.get_by_role("article").nth(1).get_by_role("link", name="Cancel").tap()
    phone.get_by_role("heading", name="Our cancellation policy").wait_for()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone.get_by_role("button", name="Cancel my visit").tap()
    sync_api.expect(phone.get_by_role("status")).to_contain_text("Your visit is cancelled")
    to_cancel.refresh_from_db()
    assert to_cancel.status == VisitStatus.CANCELLED and not to_cancel.cancelled_late
    context.close()


def test_on_a_320_px_phone_the_next_visit_comes_first_with_its_preparation_and_later_ones_fold(
    browser, live_server, transactional_db
):
    clinic = SmallClinic()
    clinic.clinic.address = "1200 Riverside Boulevardwithaverylongnamethatdoesnotbreak, Suite 5"
    clinic.clinic.save()
    clinic.iv.preparation_instructions = "- No solid food for 6 hours before.\n- Bring a blanket."
    clinic.iv.aftercare_instructions = "- Rest for the rest of the day."
    clinic.iv.save()
    avery = clinic.patient("Avery", "Applewood")
    first_day = _next_weekday(timezone.localdate(), 1)
    dose = _visit(clinic, avery, "dosing", first_day, "10:00")
    later = [
        _visit(clinic, avery, "integration", _next_weekday(first_day, n), "14:00") for n in (1, 3)
    ]
    link = issue_patient_link(avery).replace("http://localhost:8000", live_server.url)
    context = browser.new_context(
        viewport={"width": 320, "height": 640}, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(10_000)
    phone = context.new_page()
    phone.goto(link)
    no_sideways_scroll = "document.documentElement.scrollWidth <= 320"
    assert phone.evaluate(no_sideways_scroll), phone.evaluate(
        "document.documentElement.scrollWidth"
    )

    # First after the greeting: the next visit, whole, with what to do before it.
    assert phone.get_by_role("heading", level=2).first.inner_text() == "Your next visit"
    first = phone.get_by_role("article").first
    assert first.get_attribute("aria-labelledby") == f"visit-{dose.pk}"
    assert first.get_by_text("No solid food for 6 hours before.").is_visible()
    assert first.get_by_text("Arrange an adult to drive you home.").is_visible()
    assert first.get_by_role("button", name="Confirm this visit").is_visible()
    box = first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 320
    # Later visits: folded, one line each, their actions out of the way until opened.
    folds = phone.locator("details.later-visit")
    assert folds.count() == 2
    for visit in later:
        assert phone.locator(f"#later-{visit.pk}").get_attribute("open") is None
        assert not phone.locator(f"#visit-{visit.pk}").is_visible()
    phone.locator(f"#later-{later[0].pk} summary").tap()
    opened = phone.locator(f"#later-{later[0].pk}")
    sync_api.expect(opened.get_by_role("link", name="Add to calendar")).to_be_visible()
    assert not phone.locator(f"#visit-{later[1].pk}").is_visible()
    assert phone.evaluate(no_sideways_scroll), phone.evaluate(
        "document.documentElement.scrollWidth"
    )
    context.close()


def test_keyboard_only_sign_in(page, live_server, transactional_db):
    SmallClinic()
    user = front_desk(password=PASSWORD)
    page.goto(live_server.url + "/login/")
    # The username field has the focus on arrival (autofocus lands at the next
    # rendering opportunity, which can trail the load event on a busy machine);
    # Tab walks the form in order.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'id_username'")
    page.keyboard.type(user.username)
    assert page.input_value("#id_username") == user.username
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Sign in"
    page.keyboard.press("Enter")
    page.wait_for_url("**/desk/")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Today")
    # The skip link is the first stop and jumps to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"


def _proposal_rows(page) -> list[list[str]]:
    rows = page.get_by_role("region", name="Proposed plan", exact=False).locator("tbody tr")
    return [[cell.strip() for cell in row.locator("td").all_inner_texts()] for row in rows.all()]


def test_confirm_books_the_plan_on_screen_and_a_plan_changed_since_is_shown_first(
    page, live_server, transactional_db
):
    call_command("seed_demo", stdout=StringIO())
    clinic = Clinic.objects.get(slug="riverside")
    patient = Patient.objects.filter(clinic=clinic).order_by("pk")[0]  # screening cleared
    visits_before = Visit.objects.count()
    user = front_desk(password=PASSWORD)
    _sign_in(page, live_server, user.username)

    page.goto(f"{live_server.url}/desk/plans/new/?patient={patient.pk}")
    page.get_by_label("Protocol").select_option(label="KAP with lozenges")
    page.get_by_role("button", name="Propose plan").click()
    proposal = page.get_by_role("heading", name="Proposed plan", exact=False)
    assert proposal.inner_text() == f"Proposed plan: KAP with lozenges for {patient}"

    # The user picks another protocol and confirms without proposing again.
    page.get_by_label("Protocol").select_option(label="IV induction series")
    page.get_by_role("button", name="Confirm and book").click()
    assert "Nothing was booked" in page.get_by_role("alert").inner_text()
    assert proposal.inner_text() == f"Proposed plan: IV induction series for {patient}"
    assert not CarePlan.objects.filter(patient=patient).exists()
    assert Visit.objects.count() == visits_before
    rows = _proposal_rows(page)
    # Visits the patient already has are listed too, marked as not booked again.
    shown = [row[:-1] for row in rows if row[-1] == "New"]
    assert all(row[-1].startswith("Already") for row in rows if row[-1] != "New")

    page.get_by_role("button", name="Confirm and book").click()
    page.wait_for_url(f"**/desk/patients/{patient.pk}/")
    plan = CarePlan.objects.get(patient=patient)
    assert plan.protocol.slug == "iv-induction"
    booked = [
        [
            str(item.step),
            f"{item.visit.start.astimezone(clinic.tz):%a %Y-%m-%d}",
            f"{item.visit.start.astimezone(clinic.tz):%H:%M}-{item.visit.end.astimezone(clinic.tz):%H:%M}",
            str(item.visit.visit_type),
            str(item.visit.clinician),
            str(item.visit.room or "Telehealth"),
        ]
        for item in plan.planned_visits.select_related(
            "step", "visit__visit_type", "visit__clinician", "visit__room"
        ).order_by("visit__start", "pk")
    ]
    assert booked == shown


def test_a_clinician_sets_up_an_authenticator_app_signs_in_with_a_code_and_a_recovery_code_once(
    page, live_server, transactional_db
):
    from base64 import b32decode

    from django_otp.oath import totp

    clinic = SmallClinic()
    user = clinic.therapist.user
    user.set_password(PASSWORD)
    user.save()
    refused = []  # anything the Content-Security-Policy blocked on these pages
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    _sign_in(page, live_server, user.username)
    page.wait_for_url("**/account/second-factor/**")
    qr = page.locator("figure.qr svg")
    box = qr.bounding_box()
    assert box and box["width"] >= 150 and box["height"] >= 150  # drawn, not blocked
    # The person scans the code or types the key; the app computes codes from it.
    key = b32decode(page.locator("#secret").inner_text().replace(" ", ""))
    page.get_by_label("Code the app shows now").fill(f"{totp(key):06d}")
    page.get_by_role("button", name="Turn on").click()
    recovery_codes = page.get_by_role("list", name="Recovery codes")
    recovery_codes.wait_for()  # the next page, not the form still on screen
    codes = recovery_codes.locator("code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="I have saved them: continue").click()
    page.wait_for_url("**/calendars/mine/")

    def sign_in_with(code: str) -> None:
        page.get_by_role("button", name=f"Sign out {user.username}").click()
        _sign_in(page, live_server, user.username)
        page.wait_for_url("**/login/code/**")
        page.get_by_label("Code").fill(code)
        page.get_by_role("button", name="Verify").click()

    # The set-up code is spent; the app's next one (within the allowed drift) signs in.
    sign_in_with(f"{totp(key, drift=1):06d}")
    page.wait_for_url("**/calendars/mine/")
    assert page.get_by_role("heading", level=1).inner_text()

    sign_in_with(codes[0])
    page.wait_for_url("**/calendars/mine/")

    sign_in_with(codes[0])  # a recovery code works once
    assert "That code did not work" in page.get_by_role("alert").inner_text()
    assert "/login/code/" in page.url
    page.goto(live_server.url + "/calendars/mine/")
    assert "/login/code/" in page.url
    assert refused == []


def test_a_clinician_adds_a_passkey_and_passes_the_second_step_with_it(
    page, live_server, transactional_db, settings
):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice
    from django_otp_webauthn.models import WebAuthnCredential

    from scheduler.models import AuditAction, AuditEvent

    # The relying party is the site's own address: here the live server's.
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [live_server.url]
    clinic = SmallClinic()
    user = clinic.prescriber.user
    user.set_password(PASSWORD)
    user.save()
    app = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    refused = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    # Chromium's virtual authenticator stands in for the phone's screen lock.
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )

    _sign_in(page, live_server, user.username)
    page.wait_for_url("**/login/code/**")
    assert page.get_by_role("button", name="Use your passkey").count() == 0  # none yet
    page.get_by_label("Code").fill(f"{totp(app.bin_key):06d}")
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/calendars/mine/")

    page.goto(live_server.url + "/account/second-factor/")
    page.get_by_role("button", name="Add a passkey").click()
    page.get_by_text("Registration successful!").wait_for()
    assert WebAuthnCredential.objects.filter(user=user, confirmed=True).count() == 1

    page.goto(live_server.url + "/calendars/mine/")
    page.get_by_role("button", name=f"Sign out {user.username}").click()
    _sign_in(page, live_server, user.username)
    page.wait_for_url("**/login/code/**")
    page.get_by_role("button", name="Use your passkey").click()
    page.wait_for_url("**/calendars/mine/")
    assert refused == []
    assert [
        (event.get_action_display(), event.detail)
        for event in AuditEvent.objects.filter(actor=user).order_by("pk")
        if event.action != AuditAction.VIEWED_PATIENT
    ] == [
        ("signed in with a second factor", "authenticator app"),
        ("set up a second factor", "passkey"),
        ("signed in with a second factor", "passkey"),
    ]
