"""Who may open what: every URL of the project against every role, in one table.

Outcomes: 200, "login" (302 to a sign-in page), "2nd" (302 to the second step
of signing in: the code page or setting up an authenticator app), 302 (any
other redirect), 403, 404, 405. Token URLs answer on the token alone (the link
is the credential), so they are the same for every role; a wrong token is a
404 for everyone. The same table proves that no answer, to any role, may be
kept by a cache.

Staff who need a second factor (clinic admins, clinicians) are signed in with
it passed; "unverified" is a clinic admin whose password was right but who
has not typed the code yet: nothing but the second step and the token URLs.
"""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from notifications.models import InboundKind, InboundMessage
from notifications.patient_links import issue_patient_link
from plans.models import CarePlan, MonitoringFormTask, PlannedVisit, Protocol
from questionnaires.models import Instrument, QuestionnaireRequest
from scheduler import tokens
from scheduler.models import Modality, Visit, VisitKind, VisitStatus
from tests.conftest import MONDAY, SmallClinic, at
from tests.fhir_helpers import bearer
from tests.page_helpers import clinic_admin, failed_message, front_desk, sign_in_verified
from tests.safety_helpers import SEVERAL_DAYS, answer_phq9, request_before
from waitlist.models import FreedSlot, Offer, WaitlistEntry
from waitlist.offers import offer_link

ROLES = ("anonymous", "link", "desk", "therapist", "prescriber", "nurse", "admin", "unverified")
L = "login"
TWO = "2nd"
CLINICIANS = ("therapist", "prescriber", "nurse")
DESK = {"anonymous": L, "link": L, "desk": 200, "admin": 200, "unverified": TWO} | dict.fromkeys(
    CLINICIANS, 403
)
DESK_POST = DESK | {"desk": 302, "admin": 302}
EVERYONE = dict.fromkeys(ROLES, 200)
NOBODY_405 = dict.fromkeys(ROLES, 405)
NOBODY_403 = dict.fromkeys(ROLES, 403)
NOBODY_404 = dict.fromkeys(ROLES, 404)
STAFF = ("desk", "therapist", "prescriber", "nurse", "admin")
SIGNED_IN_302 = dict.fromkeys(STAFF, 302)
SIGNED_IN_200 = dict.fromkeys(STAFF, 200)
# A page behind the second step that refuses the method: the step comes first.
STAFF_405 = NOBODY_405 | {"unverified": TWO}
# A row of another clinic: the desk and admins of this one get a 404, not a 403.
ELSEWHERE = DESK | {"desk": 404, "admin": 404}

# (label, url name, arguments (from the world below), method, outcome per role)
MATRIX = [
    ("home", "home", None, "get", {"anonymous": L, "link": L, "unverified": TWO} | SIGNED_IN_302),
    ("favicon", "favicon", None, "get", dict.fromkeys(ROLES, 301)),
    (
        "sign-in page",
        "login",
        None,
        "get",
        {"anonymous": 200, "link": 200, "unverified": 302} | SIGNED_IN_302,
    ),
    # The second step: the code page for whoever has an app and has not passed it yet...
    (
        "second-factor code page",
        "second_factor_verify",
        None,
        "get",
        {"anonymous": L, "link": L, "unverified": 200} | SIGNED_IN_302,
    ),
    # ... and setting up an app, open to anyone signed in; one who has an app passes the code first.
    (
        "second-factor set-up",
        "second_factor_setup",
        None,
        "get",
        {"anonymous": L, "link": L, "unverified": TWO} | SIGNED_IN_200,
    ),
    ("sign-out by GET", "logout", None, "get", NOBODY_405),
    # Every staff account may open the index; what it lists depends on permissions.
    # Passkeys (django-otp-webauthn's JSON API): added only past the second step...
    (
        "passkey: add, begin",
        "otp_webauthn:credential-registration-begin",
        None,
        "post",
        {"anonymous": 403, "link": 403, "desk": 403, "unverified": TWO}
        | dict.fromkeys((*CLINICIANS, "admin"), 200),
    ),
    (
        "passkey: add, complete (nothing begun)",
        "otp_webauthn:credential-registration-complete",
        None,
        "post",
        {"anonymous": 403, "link": 403, "desk": 403, "unverified": TWO}
        | dict.fromkeys((*CLINICIANS, "admin"), 400),
    ),
    # ... and checked at the second step (never instead of the password).
    (
        "passkey: check, begin",
        "otp_webauthn:credential-authentication-begin",
        None,
        "post",
        {"anonymous": 403, "link": 403, "unverified": 200} | SIGNED_IN_200,
    ),
    (
        "passkey: check, complete (nothing begun)",
        "otp_webauthn:credential-authentication-complete",
        None,
        "post",
        {"anonymous": 403, "link": 403, "unverified": 400} | dict.fromkeys(STAFF, 400),
    ),
    ("passkey scripts' texts", "otp_webauthn:js-i18n-catalog", None, "get", EVERYONE),
    (
        "admin index",
        "admin:index",
        None,
        "get",
        {"anonymous": L, "link": L, "unverified": TWO} | SIGNED_IN_200,
    ),
    ("status webhook by GET", "twilio-status", None, "get", NOBODY_405),
    ("status webhook unsigned", "twilio-status", None, "post", NOBODY_403),
    ("inbound webhook by GET", "twilio-inbound", None, "get", NOBODY_405),
    ("inbound webhook unsigned", "twilio-inbound", None, "post", NOBODY_403),
    ("desk today", "desk_today", None, "get", DESK),
    ("desk day", "desk_day", "day", "get", DESK),
    ("desk this week", "desk_this_week", None, "get", DESK),
    ("desk week", "desk_week", "day", "get", DESK),
    ("desk patient search", "desk_patients", None, "get", DESK),
    ("desk patient, therapist's own", "desk_patient", "own_patient", "get", DESK),
    ("desk patient, not therapist's", "desk_patient", "other_patient", "get", DESK),
    ("desk new patient", "desk_new_patient", None, "get", DESK),
    ("desk edit patient", "desk_edit_patient", "own_patient", "get", DESK),
    ("desk book a visit", "desk_book_visit", "own_patient", "get", DESK),
    ("desk visit", "desk_visit", "own_visit", "get", DESK),
    ("desk session record", "desk_session_record", "dose", "get", DESK),
    ("desk REMS monitoring form", "desk_monitoring_form", "spravato_dose", "get", DESK),
    ("desk form submitted by GET", "desk_form_submitted", "form_task", "get", STAFF_405),
    ("desk form submitted", "desk_form_submitted", "form_task", "post", DESK_POST),
    ("desk message queue", "desk_messages", None, "get", DESK),
    ("desk resend by GET", "desk_resend", "message", "get", STAFF_405),
    ("desk resend", "desk_resend", "message", "post", DESK_POST),
    ("desk mark handled by GET", "desk_handled", "inbound", "get", STAFF_405),
    ("desk mark handled", "desk_handled", "inbound", "post", DESK_POST),
    ("desk new plan", "desk_new_plan", None, "get", DESK),
    ("desk costs and account", "desk_costs", "own_patient", "get", DESK),
    ("desk costs, empty form posted", "desk_costs", "own_patient", "post", DESK_POST),
    ("desk printable estimate", "desk_estimate", "plan", "get", DESK),
    ("other clinic's patient, costs", "desk_costs", "elsewhere_patient", "get", ELSEWHERE),
    # Superbills: clinic admins, and the patient's own prescriber (Blake's), nobody else.
    (
        "superbill, prescriber's patient",
        "desk_superbill",
        "other_patient",
        "get",
        {"anonymous": L, "link": L, "desk": 403, "admin": 200, "unverified": TWO}
        | {"therapist": 403, "prescriber": 200, "nurse": 403},
    ),
    (
        "superbill, not the prescriber's patient",
        "desk_superbill",
        "own_patient",
        "get",
        {"anonymous": L, "link": L, "desk": 403, "admin": 200, "unverified": TWO}
        | dict.fromkeys(CLINICIANS, 403),
    ),
    # Another clinic's rows, for staff of this one only: as if they did not exist.
    ("other clinic's patient", "desk_patient", "elsewhere_patient", "get", ELSEWHERE),
    ("other clinic's patient, edit", "desk_edit_patient", "elsewhere_patient", "get", ELSEWHERE),
    ("other clinic's patient, book", "desk_book_visit", "elsewhere_patient", "get", ELSEWHERE),
    ("other clinic's visit", "desk_visit", "elsewhere_visit", "get", ELSEWHERE),
    ("other clinic's dose, session", "desk_session_record", "elsewhere_dose", "get", ELSEWHERE),
    ("other clinic's message, resend", "desk_resend", "elsewhere_message", "post", ELSEWHERE),
    ("other clinic's text, handled", "desk_handled", "elsewhere_inbound", "post", ELSEWHERE),
    (
        "other clinic's safety alert",
        "desk_alert",
        "elsewhere_alert",
        "get",
        ELSEWHERE | dict.fromkeys(CLINICIANS, 404),
    ),
    # Choosing a clinic: nothing posted names one, so nobody may.
    (
        "choose a clinic, none named",
        "choose_clinic",
        None,
        "post",
        NOBODY_403 | {"unverified": TWO},
    ),
    ("choose a clinic by GET", "choose_clinic", None, "get", STAFF_405),
    # A safety alert about Avery, the therapist's patient: the desk sees that it exists and
    # whom it went to; the patient's own clinicians and admins see the answers and acknowledge.
    (
        "desk safety alert, therapist's patient",
        "desk_alert",
        "alert",
        "get",
        DESK | {"therapist": 200},
    ),
    (
        "desk safety alert, empty acknowledgement",
        "desk_alert",
        "alert",
        "post",
        DESK | {"therapist": 200, "desk": 403},
    ),
    # Questionnaire scores: clinic admins and clinicians (their own patients), not the desk.
    (
        "scores table",
        "desk_scores",
        None,
        "get",
        {"anonymous": L, "link": L, "desk": 403, "admin": 200, "unverified": TWO}
        | dict.fromkeys(CLINICIANS, 200),
    ),
    (
        "clinician's patient, therapist's own",
        "my_patient",
        "own_patient",
        "get",
        {"anonymous": L, "link": L, "desk": 403, "admin": 403, "unverified": TWO}
        | {"therapist": 200, "prescriber": 404, "nurse": 404},
    ),
    (
        "clinician's patient, prescriber's own",
        "my_patient",
        "other_patient",
        "get",
        {"anonymous": L, "link": L, "desk": 403, "admin": 403, "unverified": TWO}
        | {"therapist": 404, "prescriber": 200, "nurse": 404},
    ),
    ("desk waitlist", "desk_waitlist", None, "get", DESK),
    ("desk waitlist, empty form posted", "desk_waitlist", None, "post", DESK),
    ("patient waitlist form, live link", "patient_waitlist", "link", "get", EVERYONE),
    ("patient waitlist form, revoked link", "patient_waitlist", "revoked_link", "get", NOBODY_404),
    ("waitlist offer, live link", "waitlist_offer", "offer", "get", EVERYONE),
    ("waitlist offer, forged link", "waitlist_offer", "forged_offer", "get", NOBODY_404),
    ("patient page entrance, no link", "patient_page", None, "get", EVERYONE),
    ("patient costs, live link", "patient_costs", "link", "get", EVERYONE),
    ("patient costs, revoked link", "patient_costs", "revoked_link", "get", NOBODY_404),
    ("patient page, live link", "patient_page", "link", "get", EVERYONE),
    ("patient page, revoked link", "patient_page", "revoked_link", "get", NOBODY_404),
    ("patient visit .ics, own visit", "patient_visit_ics", "link_own_visit", "get", EVERYONE),
    (
        "patient visit .ics, other's visit",
        "patient_visit_ics",
        "link_other_visit",
        "get",
        NOBODY_404,
    ),
    ("patient moves own visit", "patient_move", "link_own_visit", "get", EVERYONE),
    ("patient moves other's visit", "patient_move", "link_other_visit", "get", NOBODY_404),
    ("patient cancels own visit", "patient_cancel", "link_own_visit", "get", EVERYONE),
    ("patient cancels other's visit", "patient_cancel", "link_other_visit", "post", NOBODY_404),
    ("patient questions, live link", "patient_questions", "link", "get", EVERYONE),
    ("patient questions, revoked link", "patient_questions", "revoked_link", "get", NOBODY_404),
    ("patient answers own question", "patient_question", "link_own_request", "get", EVERYONE),
    (
        "patient answers other's question",
        "patient_question",
        "link_other_request",
        "post",
        NOBODY_404,
    ),
    ("patient reviews own answers", "patient_question_review", "link_own_request", "get", EVERYONE),
    (
        "patient submits other's answers",
        "patient_question_review",
        "link_other_request",
        "post",
        NOBODY_404,
    ),
    # Not sent yet: back to the questions.
    (
        "patient's answers sent, not yet",
        "patient_question_done",
        "link_own_request",
        "get",
        dict.fromkeys(ROLES, 302),
    ),
    (
        "patient's answers sent, other's",
        "patient_question_done",
        "link_other_request",
        "get",
        NOBODY_404,
    ),
    ("calendar feed, live token", "calendar_feed", "feed", "get", EVERYONE),
    ("calendar feed, revoked token", "calendar_feed", "revoked_feed", "get", NOBODY_404),
    (
        "my calendar",
        "my_calendar",
        None,
        "get",
        {"anonymous": L, "link": L, "desk": 404, "admin": 404, "unverified": TWO}
        | dict.fromkeys(CLINICIANS, 200),
    ),
    # The FHIR API: its description and where to get a token are open; the token URL
    # answers an empty request with an OAuth error whoever asks; everything else takes a
    # bearer token and never a session (401, never a sign-in page). Tokens and their
    # scopes: test_fhir_urls_answer_a_token_by_its_scopes below.
    ("FHIR capability statement", "fhir:metadata", None, "get", EVERYONE),
    ("FHIR SMART configuration", "fhir:smart_configuration", None, "get", EVERYONE),
    ("FHIR token URL, empty request", "fhir:token", None, "post", dict.fromkeys(ROLES, 400)),
    ("FHIR search", "fhir:search", "fhir_type", "get", dict.fromkeys(ROLES, 401)),
    ("FHIR read", "fhir:read", "fhir_patient", "get", dict.fromkeys(ROLES, 401)),
    (
        "FHIR everything",
        "fhir:patient_everything",
        "own_patient",
        "get",
        dict.fromkeys(ROLES, 401),
    ),
    ("FHIR find", "fhir:appointment_find", None, "get", dict.fromkeys(ROLES, 401)),
    ("FHIR book", "fhir:appointment_book", None, "post", dict.fromkeys(ROLES, 401)),
    ("FHIR schedules", "fhir:schedule_search", None, "get", dict.fromkeys(ROLES, 401)),
    ("FHIR schedule", "fhir:schedule_read", "fhir_schedule", "get", dict.fromkeys(ROLES, 401)),
    ("FHIR slots", "fhir:slot_search", None, "get", dict.fromkeys(ROLES, 401)),
    ("FHIR slot", "fhir:slot_read", "fhir_slot", "get", dict.fromkeys(ROLES, 401)),
]


def project_url_names() -> set[str]:
    """Every named URL of the project; of the admin only its index (Django's own pages)."""
    names = set()

    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, inner)
            elif isinstance(pattern, URLPattern):
                name = f"{namespace}{pattern.name}" if pattern.name else str(pattern.pattern)
                if namespace.startswith("admin:") and name != "admin:index":
                    continue
                names.add(name)

    walk(get_resolver().url_patterns)
    return names


def test_every_url_of_the_project_has_a_row_in_the_matrix():
    assert project_url_names() == {row[1] for row in MATRIX}
    assert all(set(row[4]) == set(ROLES) for row in MATRIX), "every row names every role"


@pytest.fixture
def world(clinic):
    """Two patients: Avery sees the therapist, Blake only the prescriber."""
    avery = clinic.patient("Avery", "Applewood")
    blake = clinic.patient("Blake", "Birchwood")
    own = Visit.objects.create(
        patient=avery,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
        end=at(MONDAY, "10:50"),
        status=VisitStatus.BOOKED,
    )
    other = Visit.objects.create(
        patient=blake,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "11:00"),
        end=at(MONDAY, "13:00"),
        status=VisitStatus.BOOKED,
    )
    spravato = clinic.visit_type(
        "intranasal-dosing",
        VisitKind.DOSING,
        150,
        "prescriber",
        Modality.IN_PERSON,
        clinic.monitoring,
        dosing_route="intranasal",
    )
    spravato_dose = Visit.objects.create(
        patient=blake,
        visit_type=spravato,
        clinician=clinic.prescriber,
        room=clinic.room2,
        start=at(MONDAY, "14:00"),
        end=at(MONDAY, "16:30"),
        status=VisitStatus.COMPLETED,
    )
    form_task = MonitoringFormTask.objects.create(visit=spravato_dose, due_on=MONDAY)
    slot = FreedSlot.objects.create(
        clinic=clinic.clinic,
        visit=other,
        visit_sequence=0,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=other.start,
        end=other.end,
        change="cancelled",
    )
    entry = WaitlistEntry.objects.create(
        patient=avery, visit_type=clinic.iv, earliest=MONDAY, latest=MONDAY
    )
    offer = Offer.objects.create(
        slot=slot, entry=entry, patient=avery, sent_at=other.start, expires_at=other.start
    )
    offer_token = offer_link(offer).rsplit("/", 2)[-2]
    alert = answer_phq9(request_before(own, timezone.now()), item_9=SEVERAL_DAYS).alerts.get()
    # Still to answer (the PHQ-9 of the visit is answered above).
    gad7 = Instrument.objects.filter(code="gad-7").first()
    asked = {
        patient: QuestionnaireRequest.objects.create(
            patient=patient,
            visit=visit,
            instrument=gad7,
            opens_at=timezone.now() - timedelta(hours=1),
            closes_at=visit.end,
        )
        for patient, visit in ((avery, own), (blake, other))
    }
    link = issue_patient_link(avery).rsplit("/", 2)[-2]
    _, revoked_feed = tokens.issue(clinic.therapist)
    _, feed = tokens.issue(clinic.therapist)
    revoked_link = issue_patient_link(blake).rsplit("/", 2)[-2]
    issue_patient_link(blake)
    inbound = InboundMessage.objects.create(
        provider_id="SM-avery", from_number=avery.mobile, patient=avery, kind=InboundKind.OTHER
    )
    elsewhere = elsewhere_rows(world_clinic_elsewhere())
    plan = CarePlan.objects.create(
        patient=avery,
        protocol=Protocol.objects.create(clinic=clinic.clinic, name="Course", slug="course"),
        start_date=MONDAY,
    )
    PlannedVisit.objects.create(
        care_plan=plan,
        visit=own,
        step=plan.protocol.steps.create(position=1, visit_type=clinic.integration),
        occurrence=1,
    )
    args = {
        "inbound": [inbound.pk],
        **{key: [row.pk] for key, row in elsewhere.items()},
        "day": [MONDAY.isoformat()],
        "own_patient": [avery.pk],
        "other_patient": [blake.pk],
        "own_visit": [own.pk],
        "plan": [plan.pk],
        "dose": [other.pk],
        "spravato_dose": [spravato_dose.pk],
        "form_task": [form_task.pk],
        "message": [failed_message(other).pk],
        "link": [link],
        "revoked_link": [revoked_link],
        "link_own_visit": [link, own.pk],
        "link_other_visit": [link, other.pk],
        "link_own_request": [link, asked[avery].pk],
        "link_other_request": [link, asked[blake].pk],
        "feed": [feed],
        "offer": [offer_token],
        "alert": [alert.pk],
        "forged_offer": [f"{offer.pk}:{'x' * 27}"],
        "revoked_feed": [revoked_feed],
        "fhir_type": ["Patient"],
        "fhir_patient": ["Patient", avery.pk],
        "fhir_schedule": [f"practitioner-{clinic.therapist.pk}"],
        "fhir_slot": [f"practitioner-{clinic.therapist.pk}.20300603T1400Z.30"],
    }
    # Staff of this clinic only; the other is a location of the same organisation.
    desk = front_desk(clinics=[clinic.clinic])
    admin = clinic_admin(clinics=[clinic.clinic])
    unverified = clinic_admin(clinics=[clinic.clinic])
    TOTPDevice.objects.create(user=unverified, name="Phone", confirmed=True)
    users = {
        "desk": desk,
        "admin": admin,
        "unverified": unverified,
        "therapist": clinic.therapist.user,
        "prescriber": clinic.prescriber.user,
        "nurse": clinic.nurse.user,
    }
    for user in users.values():
        user.is_staff = True  # as seed_demo makes every staff account
        user.save(update_fields=["is_staff"])
    return {
        "args": args,
        "users": users,
        "avery": avery,
        "blake": blake,
        "link": link,
        "elsewhere": elsewhere,
    }


def world_clinic_elsewhere() -> SmallClinic:
    return SmallClinic("America/Denver")


def elsewhere_rows(other: SmallClinic) -> dict:
    """A patient of the other clinic with a visit, a dose, a failed text, a text in and an alert."""
    casey = other.patient("Casey", "Coldwater")
    visit = Visit.objects.create(
        patient=casey,
        visit_type=other.integration,
        clinician=other.therapist,
        start=at(MONDAY, "10:00", "America/Denver"),
        end=at(MONDAY, "10:50", "America/Denver"),
    )
    dose = Visit.objects.create(
        patient=casey,
        visit_type=other.iv,
        clinician=other.prescriber,
        room=other.room1,
        start=at(MONDAY, "12:00", "America/Denver"),
        end=at(MONDAY, "14:00", "America/Denver"),
    )
    inbound = InboundMessage.objects.create(
        provider_id="SM-casey", from_number=casey.mobile, patient=casey, kind=InboundKind.OTHER
    )
    alert = answer_phq9(request_before(visit, timezone.now()), item_9=SEVERAL_DAYS).alerts.get()
    return {
        "elsewhere_patient": casey,
        "elsewhere_visit": visit,
        "elsewhere_dose": dose,
        "elsewhere_message": failed_message(dose),
        "elsewhere_inbound": inbound,
        "elsewhere_alert": alert,
        "elsewhere_clinic": other.clinic,
    }


def client_as(world, role: str) -> Client:
    client = Client()
    if role in ("desk", "unverified"):
        # The front desk of a clinic that asks no second factor; an admin at the second step.
        client.force_login(world["users"][role])
    elif role in world["users"]:
        sign_in_verified(client, world["users"][role])
    elif role == "link":
        # A patient who opened their own link earlier: no session, only the link.
        client.get(reverse("patient_page", args=[world["link"]]))
    return client


def outcome(response) -> int | str:
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith((reverse("second_factor_verify"), reverse("second_factor_setup"))):
            return TWO
        return L if location.startswith(("/login/", "/admin/login/")) else 302
    return response.status_code


@pytest.mark.parametrize("row", MATRIX, ids=[row[0] for row in MATRIX])
def test_permission_matrix(world, row):
    label, name, arg_key, method, expected = row
    url = reverse(name, args=world["args"][arg_key] if arg_key else None)
    got = {role: outcome(getattr(client_as(world, role), method)(url)) for role in ROLES}
    assert got == expected, f"{label} ({url})"


# The one answer a cache may keep: a redirect to a static file.
CACHEABLE = {"favicon"}


@pytest.mark.parametrize("row", MATRIX, ids=[row[0] for row in MATRIX])
def test_no_answer_of_the_project_may_be_kept_by_a_cache(world, row):
    """Every URL, as every role: pages, refusals, redirects and 404s alike are no-store, private."""
    label, name, arg_key, method, _ = row
    url = reverse(name, args=world["args"][arg_key] if arg_key else None)
    kept = {}
    for role in ROLES:
        header = getattr(client_as(world, role), method)(url).get("Cache-Control", "")
        directives = {d.strip() for d in header.split(",")}
        if name in CACHEABLE:
            assert "public" in directives, f"{label} ({url}) as {role}: {header!r}"
        elif not {"no-store", "private"} <= directives:
            kept[role] = header
    assert kept == {}, f"{label} ({url}) may be cached"


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [("system/Patient.read", 200), ("system/Patient.rs", 200), ("system/Appointment.read", 403)],
)
def test_fhir_urls_answer_a_token_by_its_scopes(world, clinic, scopes, expected):
    """With a token, its scope decides, whatever session comes along (an unverified one too)."""
    token = bearer(clinic.clinic, scopes)
    for role in ("anonymous", "unverified", "admin"):
        client = client_as(world, role)
        for name, arg_key in (
            ("fhir:search", "fhir_type"),
            ("fhir:read", "fhir_patient"),
            ("fhir:patient_everything", "own_patient"),
        ):
            url = reverse(name, args=world["args"][arg_key])
            response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
            assert response.status_code == expected, (role, url)
            assert response["Content-Type"].startswith("application/fhir+json")
            assert {"no-store", "private"} <= {
                d.strip() for d in response["Cache-Control"].split(",")
            }


def test_fhir_calls_need_no_csrf_token(world, clinic):
    """Another system posts without a CSRF cookie: the token URL is no form of ours."""
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("fhir:token"), {"grant_type": "client_credentials"})
    assert response.status_code == 400  # an OAuth error, not CSRF's 403 page
    assert response.json()["error"] == "invalid_request"


def test_a_patient_link_shows_only_that_patients_data(client, world):
    page = client.get(reverse("patient_page", args=[world["link"]])).text
    assert "Avery" in page
    assert "Blake" not in page and "Birchwood" not in page


def test_clinicians_see_only_their_own_visits_and_other_patients_not_at_all(client, clinic, world):
    sign_in_verified(client, clinic.therapist.user)
    page = client.get(reverse("my_calendar"), {"week": MONDAY.isoformat()}).text
    assert "(AA)" in page and "Applewood" not in page
    assert "Blake" not in page and "(BB)" not in page
    # Nor through the desk's patient or visit pages, own patient or not.
    for url in (
        reverse("desk_patient", args=[world["blake"].pk]),
        reverse("desk_patient", args=[world["avery"].pk]),
    ):
        assert client.get(url).status_code == 403


def test_in_the_admin_a_clinician_sees_only_their_own_patients_and_visits(client, clinic, world):
    from django.contrib.auth.models import Permission

    therapist = world["users"]["therapist"]
    # Broader than seed_demo's "Clinicians" group: view permission on every model.
    therapist.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    sign_in_verified(client, therapist)
    patients = client.get(reverse("admin:scheduler_patient_changelist")).text
    assert "Applewood" in patients and "Birchwood" not in patients
    blake = reverse("admin:scheduler_patient_change", args=[world["blake"].pk])
    assert client.get(blake).status_code == 302  # the admin's answer to "no such row"
    visits = client.get(reverse("admin:scheduler_visit_changelist")).text
    assert "Applewood" in visits and "Birchwood" not in visits
    # The front desk still sees everyone.
    client.force_login(world["users"]["desk"])
    world["users"]["desk"].user_permissions.set(
        Permission.objects.filter(codename__startswith="view_")
    )
    assert "Birchwood" in client.get(reverse("admin:scheduler_patient_changelist")).text


def test_the_switcher_refuses_a_clinic_the_user_is_not_a_member_of(world):
    client = client_as(world, "desk")
    other = world["elsewhere"]["elsewhere_clinic"]
    response = client.post(reverse("choose_clinic"), {"clinic": other.pk})
    assert response.status_code == 403
    patient = reverse("desk_patient", args=[world["elsewhere"]["elsewhere_patient"].pk])
    assert client.get(patient).status_code == 404


def test_a_member_of_both_clinics_sees_the_others_rows_after_switching(world, clinic):
    other = world["elsewhere"]["elsewhere_clinic"]
    member = front_desk(clinics=[clinic.clinic, other])
    client = Client()
    client.force_login(member)
    theirs = [
        reverse(name, args=[world["elsewhere"][key].pk])
        for name, key in (
            ("desk_patient", "elsewhere_patient"),
            ("desk_book_visit", "elsewhere_patient"),
            ("desk_visit", "elsewhere_visit"),
            ("desk_alert", "elsewhere_alert"),
        )
    ]
    ours = reverse("desk_patient", args=[world["avery"].pk])
    assert [client.get(url).status_code for url in [*theirs, ours]] == [404] * 4 + [200]
    response = client.post(reverse("choose_clinic"), {"clinic": other.pk, "next": "/desk/"})
    assert response.status_code == 302 and response["Location"] == "/desk/"
    assert [client.get(url).status_code for url in [*theirs, ours]] == [200] * 4 + [404]
