"""``manage.py seed_demo``: the demo clinic, synthetic and identical however often it runs."""

import io
import re
from datetime import date, time, timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.utils import timezone

from scheduler import booking
from scheduler.models import (
    Clinic,
    Clinician,
    DiaryChange,
    Modality,
    Patient,
    Room,
    Visit,
    VisitKind,
    VisitStatus,
    VisitType,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "fast_passwords")]

LOGINS = {
    "marsh": "demo-marsh-2026",
    "wren": "demo-wren-2026",
    "fenwick": "demo-fenwick-2026",
    "calloway": "demo-calloway-2026",
    "halvorsen": "demo-halvorsen-2026",
    "finch": "demo-finch-2026",
    "okafor": "demo-okafor-2026",
    "frontdesk": "demo-frontdesk-2026",
    "admin": "demo-admin-2026",
    # The Denver location's team and its own desk.
    "osei": "demo-osei-2026",
    "lindqvist": "demo-lindqvist-2026",
    "baptiste": "demo-baptiste-2026",
    "denverdesk": "demo-denverdesk-2026",
}


@pytest.fixture
def fast_passwords(settings):
    # The default hasher costs ~0.3 s a password; the seed checks eight.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, stderr=out)
    return out.getvalue()


def every_row() -> dict[str, list[dict]]:
    User = get_user_model()
    models = [
        # The change log records writes (a rerun saves its set-up again), not what is there.
        *(m for m in apps.get_app_config("scheduler").get_models() if m is not DiaryChange),
        Room.capabilities.through,
        User,
        User.groups.through,
        Group,
        Group.permissions.through,
    ]
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in models}


def test_running_seed_demo_twice_leaves_exactly_the_same_rows(now):
    seed()
    first = every_row()
    uids = list(Visit.objects.order_by("uid").values_list("uid", flat=True))
    # A day later, so a rerun that re-booked or re-saved visits would show.
    now.shift(timedelta(days=1))
    seed()
    assert every_row() == first
    assert list(Visit.objects.order_by("uid").values_list("uid", flat=True)) == uids
    # In New York: 10 screenings done, 3 to come, 3 preparations, 2 doses and their
    # integrations, 2 past Spravato sessions, 6 past IV infusions (questionnaires.demo's
    # course). In Denver: 3 screenings done, 1 to come, 3 preparations, and a New York
    # patient's first dose and its integration.
    assert len(uids) == 28 + 9


def test_a_rerun_books_nothing_for_a_patient_who_already_had_that_visit_type():
    seed()
    cancelled = Visit.objects.filter(
        visit_type__slug="screening", status=VisitStatus.BOOKED
    ).first()
    booking.cancel(cancelled, "Demo")
    output = seed()
    assert "0 visits booked by this run." in output
    assert not Visit.objects.filter(
        patient=cancelled.patient, visit_type__slug="screening", status=VisitStatus.BOOKED
    ).exists()


def test_the_clinic_its_hours_and_rooms_match_the_demo_spec():
    seed()
    clinic = Clinic.objects.get(slug="riverside")
    assert clinic.name == "Riverside Wellness Clinic"
    assert clinic.time_zone == "America/New_York"
    # Closed on federal holidays; open on New York's own (Lincoln's Birthday, Election Day).
    assert (clinic.country, clinic.subdivision) == ("US", "NY")
    opened = {closure.start.astimezone(clinic.tz).date() for closure in clinic.closures.all()}
    assert {date(2030, 2, 12), date(2030, 11, 5)} <= opened
    assert not opened & {date(2030, 1, 1), date(2030, 11, 28)}
    assert re.fullmatch(r"\(\d{3}\) 555-01\d\d", clinic.phone)
    hours = {(row.weekday, row.opens, row.closes) for row in clinic.opening_hours.all()}
    assert hours == {(day, time(8), time(18)) for day in range(5)} | {(5, time(9), time(13))}
    rooms = {
        room.name: {capability.slug for capability in room.capabilities.all()}
        for room in clinic.rooms.all()
    }
    assert rooms == {
        "Suite A": {"infusion-chair", "vitals-monitoring", "rems-certified"},
        "Suite B": {"vitals-monitoring", "rems-certified"},
        "Consult room": {"consult"},
    }


def test_seven_clinicians_with_their_roles_hours_and_video_links():
    seed()
    clinicians = Clinician.objects.filter(clinic__slug="riverside")
    assert clinicians.count() == 7
    assert clinicians.with_role("prescriber").count() == 2
    assert clinicians.with_role("therapist").count() == 3
    assert clinicians.with_role("nurse").count() == 2
    for clinician in clinicians.select_related("user"):
        assert len(clinician.roles) == 1
        assert clinician.working_hours.exists()
        assert clinician.telehealth_link == f"https://video.example.com/{clinician.user.username}"


def test_every_visit_type_is_present_and_valid():
    seed()
    types = {vt.slug: vt for vt in VisitType.objects.filter(clinic__slug="riverside")}
    assert set(types) == {
        "screening",
        "preparation",
        "iv-infusion",
        "im-dosing",
        "lozenge-dosing",
        "intranasal-dosing",
        "integration",
        "maintenance",
    }
    for visit_type in types.values():
        visit_type.full_clean()
        assert visit_type.price > 0
        if visit_type.is_dosing:
            assert visit_type.modality == Modality.IN_PERSON
            assert visit_type.room_capability is not None
            assert "drive" in visit_type.preparation_instructions
            assert visit_type.aftercare_instructions
    assert (types["iv-infusion"].duration_minutes, types["iv-infusion"].monitoring_minutes) == (
        120,
        60,
    )
    # At least two hours of monitoring after the dose, and time to give it first.
    assert types["intranasal-dosing"].monitoring_minutes == 120
    assert types["intranasal-dosing"].duration_minutes > 120
    assert types["intranasal-dosing"].room_capability.slug == "rems-certified"
    assert types["lozenge-dosing"].duration_minutes == 165
    assert [seat.roles for seat in types["lozenge-dosing"].seats] == [("nurse",), ("therapist",)]
    assert "30 minutes" in types["intranasal-dosing"].preparation_instructions
    assert types["preparation"].is_telehealth and types["integration"].is_telehealth


def test_every_demo_visit_type_has_its_instructions_in_spanish_at_both_locations():
    seed()
    types = VisitType.objects.prefetch_related("translated_instructions")
    assert {vt.clinic.slug for vt in types} == {"riverside", "riverside-denver"}
    for visit_type in types:
        spanish = visit_type.instructions_in("es")
        assert spanish.translated, visit_type
        assert spanish.preparation != visit_type.preparation_instructions
        # The same number of points as the English, the ride home among them.
        for english, translated in (
            (visit_type.preparation_instructions, spanish.preparation),
            (visit_type.aftercare_instructions, spanish.aftercare),
        ):
            assert translated.count("\n- ") == english.count("\n- "), visit_type
        if visit_type.is_dosing:
            assert "le lleve a casa" in spanish.preparation
            assert visit_type.clinic.phone in spanish.aftercare


def test_patients_are_synthetic_with_e164_mobiles_and_recorded_consent():
    seed()
    patients = list(Patient.objects.filter(clinic__slug="riverside"))
    assert len(patients) == 20
    for patient in patients:
        assert re.fullmatch(r"\+121255501\d\d", patient.mobile), patient.mobile
        assert patient.email.endswith(("@example.com", "@example.org"))
        patient.full_clean()
    assert len({patient.mobile for patient in patients}) == 20
    consented = [patient for patient in patients if patient.sms_consent_at]
    assert 0 < len(consented) < len(patients)
    assert all(patient.sms_consent_method for patient in consented)


def test_demo_visits_ahead_are_booked_within_two_weeks_and_pass_booking_rules():
    seed()
    visits = list(
        Visit.objects.at_clinic(Clinic.objects.get(slug="riverside")).select_related(
            "patient__clinic", "visit_type__clinic", "clinician", "room"
        )
    )
    today = timezone.now()
    ahead = [visit for visit in visits if visit.start > today]
    assert len(ahead) == 10
    assert {visit.visit_type.kind for visit in ahead} == set(VisitKind) - {VisitKind.MAINTENANCE}
    for visit in ahead:
        assert visit.status == VisitStatus.BOOKED
        assert visit.start < today + timedelta(days=15)
        staff = booking.staff_of(visit)
        assert booking.problems_for(visit, staff) + booking.rule_problems(visit) == []
        if visit.visit_type.is_dosing:  # a monitor leads, a therapist guides
            assert [member.seat.roles for member in staff] == [("therapist",)]
    # What is past is the screenings done, two Spravato sessions and the six infusions
    # of the questionnaires' course, each one a visit completed in the last weeks.
    past = [visit for visit in visits if visit.start <= today]
    assert len(past) == 18
    for visit in past:
        assert visit.status == VisitStatus.COMPLETED
        assert visit.visit_type.kind in (VisitKind.SCREENING, VisitKind.DOSING)
        assert today - timedelta(days=29) < visit.start and visit.end < today
    assert sorted(v.visit_type.slug for v in past if v.visit_type.is_dosing) == [
        *["intranasal-dosing"] * 2,
        *["iv-infusion"] * 6,
    ]


def test_staff_users_groups_and_permissions():
    seed()
    User = get_user_model()
    assert set(User.objects.filter(is_staff=True).values_list("username", flat=True)) == set(LOGINS)
    assert list(User.objects.filter(is_superuser=True).values_list("username", flat=True)) == [
        "admin"
    ]
    frontdesk = User.objects.get(username="frontdesk")
    assert frontdesk.groups.filter(name="Front desk").exists()
    assert frontdesk.has_perms(["scheduler.add_visit", "scheduler.change_patient"])
    assert not frontdesk.has_perm("scheduler.change_clinic")
    therapist = User.objects.get(username="fenwick")
    assert therapist.groups.filter(name="Clinicians").exists()
    assert therapist.has_perm("scheduler.view_visit")
    assert not therapist.has_perm("scheduler.change_visit")
    assert User.objects.get(username="admin").groups.filter(name="Clinic admins").exists()
    assert (
        Group.objects.get(name="Clinic admins")
        .permissions.filter(codename="delete_clinic")
        .exists()
    )


def test_printed_logins_work_and_the_admin_url_is_shown():
    output = seed()
    for username, password in LOGINS.items():
        assert re.search(rf"^\s+{username}\s+{re.escape(password)}\s+\S", output, re.MULTILINE)
        # Through the sign-in lockout, which needs the request (config/signin_lock.py).
        signing_in = RequestFactory().post("/login/")
        assert authenticate(signing_in, username=username, password=password) is not None
    assert f"{settings.SITE_URL}/admin/" in output


def test_demo_clinicians_and_admins_get_a_printed_authenticator_key_and_demo_code_prints_codes():
    from base64 import b32decode

    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    pattern = re.compile(r"^  (\w+)\s+((?:[A-Z2-7]{4} ){7}[A-Z2-7]{4})$", re.MULTILINE)
    keys = dict(pattern.findall(seed()))
    assert dict(pattern.findall(seed())) == keys  # the same keys every run
    assert set(keys) == set(LOGINS) - {"frontdesk", "denverdesk"}
    for username, key in keys.items():
        device = TOTPDevice.objects.get(user__username=username)
        expected = f"{totp(b32decode(key.replace(' ', ''))):06d}"
        printed = io.StringIO()
        call_command("demo_code", username, stdout=printed)
        assert printed.getvalue().strip() == expected
        assert device.verify_token(expected)
    with pytest.raises(CommandError, match="no demo authenticator"):
        call_command("demo_code", "frontdesk")


def test_the_clinicians_group_cannot_browse_messages_replies_screenings_or_plans():
    from django.contrib.auth.models import Group

    seed()
    codenames = set(
        Group.objects.get(name="Clinicians").permissions.values_list("codename", flat=True)
    )
    assert {"view_visit", "view_patient", "view_protocol"} <= codenames
    for hidden in (
        "message",
        "inboundmessage",
        "screening",
        "careplan",
        "plannedvisit",
        "auditevent",
    ):
        assert f"view_{hidden}" not in codenames
    desk = set(Group.objects.get(name="Front desk").permissions.values_list("codename", flat=True))
    assert {"view_message", "change_inboundmessage", "view_screening"} <= desk
