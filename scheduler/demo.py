"""The scheduling layer of the demo clinic: the clinic, its rooms and hours (and the
state holidays it works on), staff and their sign-in groups, visit types,
synthetic patients, a few booked visits, and the calendar rows (feed addresses,
an invite preference, a therapist's own calendar).

``manage.py seed_demo`` (in the web app) runs this layer first, then the plans
layer (``plans.demo``) and the reminders layer (``notifications.demo``).

Idempotent: every row is found by a natural key (slug, username, email, name) and
brought back to its demo values, so a second run writes the same rows and adds
none. Demo visits are booked only for patients who have no visit of that type
yet, so reruns on later days do not pile up bookings. Calendar addresses are
issued only to clinicians without a live one (and returned, since that is the
only time they can be printed), and the sample calendar is registered and read
once. All names, numbers (the fictional 555-01xx range) and addresses are made up.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models
from django.dispatch import Signal
from django.utils import timezone

from scheduler import booking, tokens
from scheduler.availability import free_slots
from scheduler.external_calendars import busy_intervals, store_busy_blocks
from scheduler.links import feed_url
from scheduler.models import (
    Capability,
    Clinic,
    Clinician,
    ClinicianRole,
    Closure,
    ClosureKind,
    ConsentMethod,
    DosingRoute,
    ExternalCalendar,
    InvitePreference,
    Modality,
    OpeningHours,
    Patient,
    Room,
    StaffingRequirement,
    StaffMembership,
    StaffRole,
    TranslatedInstructions,
    TranslatedPolicy,
    Visit,
    VisitKind,
    VisitType,
    Weekday,
    WorkingHours,
)
from scheduler.public_holidays import holidays_between
from scheduler.roles import CLINIC_ADMINS_GROUP, FRONT_DESK_GROUP

logger = logging.getLogger(__name__)

# Sent by ``seed_demo`` (in the web app) after every layer it knows, with ``clinic``:
# apps no layer below may import (the FHIR API) add their part of the demo here and
# return the lines the command prints for it.
demo_seeded = Signal()

CLINIC = {
    "slug": "riverside",
    "name": "Riverside Wellness Clinic",
    "time_zone": "America/New_York",
    "phone": "(212) 555-0100",
    "address": "48 Example Avenue, Suite 300\nRiverside, NY 10099",
    "country": "US",
    "subdivision": "NY",
}

# The organisation's second location: another state, another time zone.
DENVER = {
    "slug": "riverside-denver",
    "name": "Riverside Wellness Denver",
    "time_zone": "America/Denver",
    "phone": "(303) 555-0100",
    "address": "1200 Sample Street, Floor 2\nDenver, CO 80299",
    "country": "US",
    "subdivision": "CO",
    # Worded by the location itself (New York keeps the one a clinic starts with), and
    # in Spanish too (DENVER_SPANISH_POLICY): the admin's translated policies.
    "late_cancellation_policy": "Please cancel at least 48 hours ahead. Later, or if you do "
    "not come, we charge the late-cancellation fee; we waive it once a year, and always for "
    "an emergency.",
}
DENVER_SPANISH_POLICY = (
    "Por favor cancele con al menos 48 horas de anticipación. Si cancela más tarde, o no "
    "viene, cobramos el cargo por cancelación tardía; lo perdonamos una vez al año, y "
    "siempre en una emergencia."
)

MON_FRI = (Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY)


def weekly(days, opens: str, closes: str) -> list[tuple[int, time, time]]:
    return [(day, time.fromisoformat(opens), time.fromisoformat(closes)) for day in days]


OPENING_HOURS = weekly(MON_FRI, "08:00", "18:00") + weekly([Weekday.SATURDAY], "09:00", "13:00")

CAPABILITIES = {
    "infusion-chair": "Infusion chair",
    "vitals-monitoring": "Vital-signs monitoring",
    "rems-certified": "REMS-certified setting",
    "consult": "Consultation room",
}

ROOMS = {
    "Suite A": ["infusion-chair", "vitals-monitoring", "rems-certified"],
    "Suite B": ["vitals-monitoring", "rems-certified"],
    "Consult room": ["consult"],
}


@dataclass(frozen=True)
class Staff:
    username: str
    first_name: str
    last_name: str
    role: str  # shown in the printed logins
    group: str
    display_name: str = ""  # clinicians only
    clinician_roles: tuple[str, ...] = ()
    hours: tuple[tuple[int, time, time], ...] = ()

    @property
    def password(self) -> str:
        return f"demo-{self.username}-2026"


# Sign-in groups: the first and last give the desk roles (scheduler.roles).
FRONT_DESK, CLINICIANS, CLINIC_ADMINS = FRONT_DESK_GROUP, "Clinicians", CLINIC_ADMINS_GROUP

STAFF = [
    Staff(
        "marsh",
        "Elena",
        "Marsh",
        "Prescriber",
        CLINICIANS,
        "Dr. Elena Marsh",
        (ClinicianRole.PRESCRIBER,),
        tuple(weekly(MON_FRI, "09:00", "17:00")),
    ),
    Staff(
        "wren",
        "Tobias",
        "Wren",
        "Prescriber",
        CLINICIANS,
        "Dr. Tobias Wren",
        (ClinicianRole.PRESCRIBER,),
        tuple(weekly(MON_FRI[:4], "10:00", "18:00")),
    ),
    Staff(
        "fenwick",
        "Priya",
        "Fenwick",
        "Therapist",
        CLINICIANS,
        "Priya Fenwick, LMFT",
        (ClinicianRole.THERAPIST,),
        tuple(weekly(MON_FRI, "09:00", "17:00")),
    ),
    Staff(
        "calloway",
        "Jonah",
        "Calloway",
        "Therapist",
        CLINICIANS,
        "Jonah Calloway, LCSW",
        (ClinicianRole.THERAPIST,),
        tuple(weekly(MON_FRI[:4], "09:00", "17:00") + weekly([Weekday.SATURDAY], "09:00", "13:00")),
    ),
    Staff(
        "halvorsen",
        "Mira",
        "Halvorsen",
        "Therapist",
        CLINICIANS,
        "Mira Halvorsen, PhD",
        (ClinicianRole.THERAPIST,),
        tuple(weekly(MON_FRI, "09:00", "13:00")),
    ),
    Staff(
        "finch",
        "Rosa",
        "Finch",
        "Nurse",
        CLINICIANS,
        "Rosa Finch, RN",
        (ClinicianRole.NURSE,),
        tuple(weekly(MON_FRI, "08:00", "16:00")),
    ),
    Staff(
        "okafor",
        "Samuel",
        "Okafor",
        "Nurse",
        CLINICIANS,
        "Samuel Okafor, RN",
        (ClinicianRole.NURSE,),
        tuple(weekly(MON_FRI, "10:00", "18:00")),
    ),
    Staff("frontdesk", "Robin", "Ashdown", "Front desk (both clinics)", FRONT_DESK),
    Staff("admin", "Sam", "Keeper", "Clinic admin (superuser)", CLINIC_ADMINS),
]

# Denver's own team, and its own desk; Robin (frontdesk) works both desks.
DENVER_STAFF = [
    Staff(
        "osei",
        "Ama",
        "Osei",
        "Prescriber (Denver)",
        CLINICIANS,
        "Dr. Ama Osei",
        (ClinicianRole.PRESCRIBER,),
        tuple(weekly(MON_FRI, "08:00", "16:00")),
    ),
    Staff(
        "lindqvist",
        "Nils",
        "Lindqvist",
        "Therapist (Denver)",
        CLINICIANS,
        "Nils Lindqvist, LPC",
        (ClinicianRole.THERAPIST,),
        tuple(weekly(MON_FRI, "08:00", "16:00")),
    ),
    Staff(
        "baptiste",
        "Lea",
        "Baptiste",
        "Nurse (Denver)",
        CLINICIANS,
        "Lea Baptiste, RN",
        (ClinicianRole.NURSE,),
        tuple(weekly(MON_FRI, "08:00", "16:00")),
    ),
    Staff("denverdesk", "Mateo", "Ruiz", "Front desk (Denver only)", FRONT_DESK),
    STAFF[-2],  # frontdesk: a member of both clinics, who switches between them
]


# -- instructions (docs/rules.md; clinics edit them) -----------------------------------

NO_SUBSTANCES = "No alcohol, cannabis or other drugs for 24 hours before and after your session."
MEDICINES = (
    "Take your usual medicines with sips of water. Lamotrigine and benzodiazepines may "
    "need to be held for about 6 hours before and after, only as your prescriber tells "
    "you. Blood-pressure medicines are usually taken as normal."
)
RIDE_HOME = (
    "Arrange for an adult to drive you home. Do not drive, and make no important "
    "decisions, until the next day after a restful night's sleep."
)
BRING = "Bring comfortable clothes, a blanket, an eye mask and music if you like."


def points(*lines: str) -> str:
    """Instructions as a list a patient reads point by point."""
    return "\n".join(f"- {line}" for line in lines)


def dosing_preparation(route_note: str, fasting: str) -> str:
    return points(route_note, fasting, NO_SUBSTANCES, MEDICINES, RIDE_HOME, BRING)


def aftercare(phone: str) -> str:
    return points(
        "Rest for the rest of the day; no driving until the next day, after a "
        "restful night's sleep.",
        "Drink water and eat something light when you feel ready.",
        "Your integration session and its video link are on your visit page.",
        f"Questions or feeling unwell: call the clinic at {phone}. In an emergency call 911.",
    )


TELEHEALTH_PREPARATION = (
    "Join from a quiet, private place with a stable connection. The video link is on "
    "your visit page and arrives about an hour before the session."
)


class Need(NamedTuple):
    """A place on a visit type's team (scheduler.models.StaffingRequirement); the first leads."""

    roles: tuple[str, ...]
    stays: int | None = None  # minutes from the start; None: the whole visit
    optional: bool = False


def need(*roles: str, stays: int | None = None, optional: bool = False) -> Need:
    return Need(roles, stays, optional)


def visit_types(phone: str) -> list[dict]:
    """The demo's visit types. Dosing is a team: a medical monitor leads, a therapist guides
    (for IV, through the infusion's first hour); for intranasal doses the therapist is optional."""
    dosing_aftercare = aftercare(phone)
    return [
        {
            "slug": "screening",
            "name": "Screening and evaluation",
            "kind": VisitKind.SCREENING,
            "duration_minutes": 60,
            "modality": Modality.IN_PERSON,
            "room_capability": "consult",
            "team": [need(ClinicianRole.PRESCRIBER)],
            "price": "350.00",
            "preparation_instructions": (
                "Bring photo ID and a list of every medicine and supplement you take. "
                "Please arrive 10 minutes early."
            ),
        },
        {
            "slug": "preparation",
            "name": "Preparation session",
            "kind": VisitKind.PREPARATION,
            "duration_minutes": 50,
            "modality": Modality.TELEHEALTH,
            "team": [need(ClinicianRole.THERAPIST)],
            "price": "175.00",
            "preparation_instructions": TELEHEALTH_PREPARATION,
        },
        {
            "slug": "iv-infusion",
            "name": "IV infusion session",
            "kind": VisitKind.DOSING,
            "dosing_route": DosingRoute.IV,
            "min_hours_between_doses": 24,
            "max_doses_per_week": 3,
            "duration_minutes": 120,
            "monitoring_minutes": 60,
            "modality": Modality.IN_PERSON,
            "room_capability": "infusion-chair",
            "team": [
                need(ClinicianRole.PRESCRIBER, ClinicianRole.NURSE),
                need(ClinicianRole.THERAPIST, stays=60),
            ],
            "price": "475.00",
            "preparation_instructions": dosing_preparation(
                "The IV infusion takes about 40-60 minutes; then you rest with us for up "
                "to an hour.",
                "No solid food for 6 hours before; clear liquids until 2 hours before.",
            ),
            "aftercare_instructions": dosing_aftercare,
        },
        {
            "slug": "im-dosing",
            "name": "IM dosing session",
            "kind": VisitKind.DOSING,
            "dosing_route": DosingRoute.IM,
            "min_hours_between_doses": 24,
            "max_doses_per_week": 3,
            "duration_minutes": 105,
            "monitoring_minutes": 60,
            "modality": Modality.IN_PERSON,
            "room_capability": "vitals-monitoring",
            "team": [need(ClinicianRole.PRESCRIBER), need(ClinicianRole.THERAPIST)],
            "price": "425.00",
            "preparation_instructions": dosing_preparation(
                "The intramuscular dose works within minutes and for about an hour; we "
                "monitor you throughout.",
                "No solid food for 4 hours before; clear liquids until 1 hour before.",
            ),
            "aftercare_instructions": dosing_aftercare,
        },
        {
            # A nurse on site is enough to monitor an oral dose (docs/rules.md,
            # course of care); prescribers stay free for IV/IM. The therapist
            # guides the whole session.
            "slug": "lozenge-dosing",
            "name": "Lozenge dosing session",
            "kind": VisitKind.DOSING,
            "dosing_route": DosingRoute.LOZENGE,
            "min_hours_between_doses": 24,
            "max_doses_per_week": 3,
            "duration_minutes": 165,
            "monitoring_minutes": 120,
            "modality": Modality.IN_PERSON,
            "room_capability": "vitals-monitoring",
            "team": [need(ClinicianRole.NURSE), need(ClinicianRole.THERAPIST)],
            "price": "395.00",
            "preparation_instructions": dosing_preparation(
                "The sublingual lozenge dissolves in your mouth without swallowing; the "
                "session lasts about 2.5-3 hours.",
                "No solid food for 4 hours before; clear liquids until 1 hour before.",
            ),
            "aftercare_instructions": dosing_aftercare,
        },
        {
            "slug": "intranasal-dosing",
            "name": "Intranasal dosing session",
            "kind": VisitKind.DOSING,
            "dosing_route": DosingRoute.INTRANASAL,
            "min_hours_between_doses": 48,
            "max_doses_per_week": 2,
            # Arrival, blood pressure and the devices (5 minutes apart) take about
            # half an hour before the two hours of monitoring start.
            "duration_minutes": 150,
            "monitoring_minutes": 120,
            "modality": Modality.IN_PERSON,
            "room_capability": "rems-certified",
            "team": [
                need(ClinicianRole.NURSE, ClinicianRole.PRESCRIBER),
                need(ClinicianRole.THERAPIST, optional=True),
            ],
            "price": "325.00",
            "preparation_instructions": dosing_preparation(
                "Intranasal esketamine (Spravato) sessions include at least 2 hours of monitoring; "
                "we check your blood pressure before the dose and about 40 minutes after.",
                "No food for 2 hours and no liquids for 30 minutes before your session.",
            ),
            "aftercare_instructions": dosing_aftercare,
        },
        {
            "slug": "integration",
            "name": "Integration session",
            "kind": VisitKind.INTEGRATION,
            "duration_minutes": 50,
            "modality": Modality.TELEHEALTH,
            "team": [need(ClinicianRole.THERAPIST)],
            "price": "175.00",
            "preparation_instructions": TELEHEALTH_PREPARATION,
        },
        {
            "slug": "maintenance",
            "name": "Maintenance check-in",
            "kind": VisitKind.MAINTENANCE,
            "duration_minutes": 30,
            "modality": Modality.TELEHEALTH,
            "team": [need(ClinicianRole.PRESCRIBER)],
            "price": "125.00",
            "preparation_instructions": TELEHEALTH_PREPARATION,
        },
    ]


# -- patients ---------------------------------------------------------------------

PATIENT_NAMES = [
    ("Avery", "Applewood"),
    ("Blake", "Birchfield"),
    ("Casey", "Cloudberry"),
    ("Dana", "Driftwood"),
    ("Emery", "Elmsworth"),
    ("Finley", "Foxglove"),
    ("Gray", "Goldfinch"),
    ("Harper", "Hollyhock"),
    ("Indigo", "Ivybridge"),
    ("Jules", "Juniper"),
    ("Kai", "Kettleby"),
    ("Logan", "Larkspur"),
    ("Marlow", "Moonfield"),
    ("Noa", "Nettlefold"),
    ("Oakley", "Oatridge"),
    ("Parker", "Pebblebrook"),
    ("Quinn", "Quillfeather"),
    ("Riley", "Rosemont"),
    ("Sage", "Saltmarsh"),
    ("Tatum", "Thistledown"),
]
CONSENT_METHODS = [ConsentMethod.WEB_FORM, ConsentMethod.PAPER_FORM, ConsentMethod.VERBAL]
# Patients (by index) who read their texts, emails and page in Spanish: Blake,
# who agreed to texts and has a preparation visit booked.
SPANISH_READERS = (1,)
FIRST_CONSENT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


DENVER_PATIENT_NAMES = [
    ("Arden", "Aspenhall"),
    ("Briar", "Bluestem"),
    ("Cody", "Columbine"),
    ("Devon", "Dunmore"),
]


def patient_rows(names=PATIENT_NAMES, spec=CLINIC, area="212") -> list[dict]:
    rows = []
    for index, (first, last) in enumerate(names):
        number = index + 1
        # Two in three agreed to texts; one of those later replied STOP.
        consented = index % 3 != 2
        consent_at = FIRST_CONSENT + timedelta(days=3 * index) if consented else None
        rows.append(
            {
                "email": f"{first}.{last}@{'example.com' if index % 2 else 'example.org'}".lower(),
                "first_name": first,
                "last_name": last,
                "date_of_birth": date(
                    1962 + (index * 7) % 40, 1 + index % 12, 1 + (index * 5) % 28
                ),
                # Typed as staff would; full_clean stores E.164 (+12125550101).
                "mobile": f"({area}) 555-{100 + number:04d}",
                "time_zone": "America/Chicago" if index in (4, 13) else spec["time_zone"],
                "contact_by_sms": True,
                "contact_by_email": True,
                "sms_consent_at": consent_at,
                "sms_consent_method": CONSENT_METHODS[index % 3] if consented else "",
                "sms_opted_out_at": consent_at + timedelta(days=30) if index == 9 else None,
                "language": "es" if index in SPANISH_READERS else "en",
            }
        )
    return rows


# (patient index, visit type slug): the first free slot from a few days out, so
# the demo schedule spreads over the coming two weeks. Patients 0-9 have had
# their screening (plans.demo records the visit and its clearance), so they go
# on to preparation; 10-12 are new and come for their screening. Doses, and
# the integration after each, need a cleared screening: the plans layer books them.
DEMO_BOOKINGS = [
    (10, "screening"),
    (11, "screening"),
    (12, "screening"),
    (0, "preparation"),
    (1, "preparation"),
    (3, "preparation"),
]
BOOKING_WINDOW_DAYS = 14


def upsert(model: type[models.Model], lookup: dict, values: dict) -> tuple[models.Model, bool]:
    """update_or_create, but validated: full_clean normalises mobiles to E.164 and
    refuses demo data the models would refuse from staff.

    A row already as the demo wants it is not saved again, so that its
    ``updated_at`` (FHIR's lastUpdated) stays what it was on a rerun.
    """
    instance = model.objects.filter(**lookup).first()
    created = instance is None
    if created:
        instance = model(**lookup)
    fields = [f.attname for f in model._meta.concrete_fields]
    before = {name: getattr(instance, name) for name in fields}
    for name, value in values.items():
        setattr(instance, name, value)
    instance.full_clean()
    if created or any(getattr(instance, name) != before[name] for name in fields):
        instance.save()
    return instance, created


def seed_clinic(spec: dict = CLINIC) -> Clinic:
    values = {key: value for key, value in spec.items() if key != "slug"}
    clinic, _ = upsert(Clinic, {"slug": spec["slug"]}, values)
    replace_weekly(OpeningHours, {"clinic": clinic}, OPENING_HOURS)
    seed_state_holiday_openings(clinic)
    capabilities = {
        slug: upsert(Capability, {"slug": slug}, {"name": name})[0]
        for slug, name in CAPABILITIES.items()
    }
    for name, slugs in ROOMS.items():
        room, _ = upsert(Room, {"clinic": clinic, "name": name}, {})
        room.capabilities.set([capabilities[slug] for slug in slugs])
    return clinic


STATE_HOLIDAY_OPENING = "Open: a state holiday, not a federal one"


def seed_state_holiday_openings(clinic: Clinic) -> None:
    """Open anyway on the state's own holidays (Lincoln's Birthday, Election Day) while bookable.

    Like many private practices, the demo clinic closes on federal holidays
    only. Its state closes it on the rest by default; these rows show how a
    clinic opens anyway (admin: closures of kind *open*).
    """
    today = timezone.localdate(timezone=clinic.tz)
    last = today + timedelta(days=settings.BOOKING_HORIZON_DAYS)
    first = date(today.year, 1, 1)  # whole years, so reruns on later days add none mid-year
    last = date(last.year, 12, 31)
    national = holidays_between(clinic.country, "", first, last)
    for day in holidays_between(clinic.country, clinic.subdivision, first, last):
        if day in national:
            continue
        Closure.objects.get_or_create(
            clinic=clinic,
            kind=ClosureKind.OPEN,
            start=datetime.combine(day, time(0), tzinfo=clinic.tz),
            end=datetime.combine(day + timedelta(days=1), time(0), tzinfo=clinic.tz),
            defaults={"reason": STATE_HOLIDAY_OPENING},
        )


def replace_weekly(model, owner: dict, hours) -> None:
    """Make the owner's weekly rows exactly ``hours``; rows already right keep their ids.

    One read, one delete and one insert (the demo writes dozens of them, and
    the tests seed it over a hundred times a run).
    """
    wanted = {tuple(row) for row in hours}
    have = {(row.weekday, row.opens, row.closes): row.pk for row in model.objects.filter(**owner)}
    model.objects.filter(pk__in=[pk for key, pk in have.items() if key not in wanted]).delete()
    model.objects.bulk_create(
        model(**owner, weekday=weekday, opens=opens, closes=closes)
        for weekday, opens, closes in sorted(wanted - set(have))
    )


# Desk accounts work at the clinic they are seeded for (scheduler.roles).
MEMBERSHIP_OF_GROUP = {FRONT_DESK: StaffRole.FRONT_DESK, CLINIC_ADMINS: StaffRole.ADMIN}


def seed_staff(clinic: Clinic, staff: list[Staff] = STAFF) -> dict[str, Clinician]:
    """Staff accounts in their sign-in groups (the web app's demo layer grants the groups'
    permissions), desk accounts members of ``clinic``, clinicians working there."""
    User = get_user_model()
    clinicians = {}
    for member in staff:
        user, created = User.objects.update_or_create(
            username=member.username,
            defaults={
                "first_name": member.first_name,
                "last_name": member.last_name,
                "email": f"{member.username}@riverside.example.com",
                "is_staff": True,
                "is_superuser": member.group == CLINIC_ADMINS,
                "is_active": True,
            },
        )
        # A fresh hash (new salt) on every run would make reruns differ.
        if created or not user.check_password(member.password):
            user.set_password(member.password)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name=member.group)[0])
        if member.group in MEMBERSHIP_OF_GROUP:
            StaffMembership.objects.get_or_create(
                user=user, clinic=clinic, role=MEMBERSHIP_OF_GROUP[member.group]
            )
        if not member.clinician_roles:
            continue
        clinician, _ = upsert(
            Clinician,
            {"user": user},
            {
                "clinic": clinic,
                "display_name": member.display_name,
                "is_prescriber": ClinicianRole.PRESCRIBER in member.clinician_roles,
                "is_therapist": ClinicianRole.THERAPIST in member.clinician_roles,
                "is_nurse": ClinicianRole.NURSE in member.clinician_roles,
                "telehealth_link": f"https://video.example.com/{member.username}",
                "is_active": True,
            },
        )
        replace_weekly(WorkingHours, {"clinician": clinician}, member.hours)
        clinicians[member.username] = clinician
    return clinicians


def seed_visit_types(clinic: Clinic) -> dict[str, VisitType]:
    capabilities = {capability.slug: capability for capability in Capability.objects.all()}
    types = {}
    for spec in visit_types(clinic.phone):
        values = {
            "dosing_route": "",
            "min_hours_between_doses": None,
            "max_doses_per_week": None,
            "monitoring_minutes": 0,
            "aftercare_instructions": "",
            **spec,
            "price": Decimal(spec["price"]),
            "room_capability": capabilities.get(spec.get("room_capability")),
        }
        slug = values.pop("slug")
        team = values.pop("team")
        types[slug], _ = upsert(VisitType, {"clinic": clinic, "slug": slug}, values)
        replace_team(types[slug], team)
    return types


def replace_team(visit_type: VisitType, team: list[Need]) -> None:
    """Make the visit type's team exactly ``team``; rows already right keep their ids."""
    keep = []
    for position, need in enumerate(team):
        row, _ = StaffingRequirement.objects.get_or_create(
            visit_type=visit_type,
            position=position,
            roles=",".join(need.roles),
            count=1,
            joins_after_minutes=0,
            stays_minutes=need.stays,
            optional=need.optional,
        )
        keep.append(row.pk)
    visit_type.staffing.exclude(pk__in=keep).delete()


def seed_patients(clinic: Clinic, rows: list[dict] | None = None) -> list[Patient]:
    patients = []
    for row in patient_rows() if rows is None else rows:
        values = dict(row)
        email = values.pop("email")
        patient, _ = upsert(Patient, {"clinic": clinic, "email": email}, values)
        patients.append(patient)
    return patients


def seed_visits(clinic, types, patients, clinicians, bookings=DEMO_BOOKINGS) -> list[Visit]:
    today = timezone.localdate(timezone=clinic.tz)
    last_day = today + timedelta(days=BOOKING_WINDOW_DAYS)
    booked = []
    for number, (index, slug) in enumerate(bookings):
        patient, visit_type = patients[index], types[slug]
        if Visit.objects.filter(patient=patient, visit_type=visit_type).exists():
            continue
        # Take turns among qualified clinicians, else the earliest slot would
        # give every visit to the same person.
        lead = visit_type.lead_seat
        qualified = [c for c in clinicians.values() if lead.role_of(c)]
        turn = qualified[number % len(qualified)]
        first_day = today + timedelta(days=1 + number)
        slots = free_slots(
            visit_type, first_day, last_day, clinicians=[turn], patient=patient, limit=1
        ) or free_slots(visit_type, first_day, last_day, patient=patient, limit=1)
        if not slots:
            logger.warning("No free slot for %s for %s; skipped.", visit_type, patient)
            continue
        slot = slots[0]
        booked.append(booking.book_slot(patient, visit_type, slot))
    return booked


# Served at /static/demo/own-calendar.ics by the development server, so the
# worker's 15-minute reads work in the demo; read from disk when seeding.
SAMPLE_CALENDAR = Path(__file__).resolve().parent.parent / "static" / "demo" / "own-calendar.ics"


def seed_calendars(clinic: Clinic) -> list[tuple[Clinician, str]]:
    """Create the demo's calendar rows; (clinician, feed URL) for each address issued now."""
    clinicians = list(clinic.clinicians.filter(is_active=True).order_by("display_name"))
    issued = []
    for clinician in clinicians:
        if tokens.active(clinician) is None:
            _, raw = tokens.issue(clinician)
            issued.append((clinician, feed_url(raw)))
    prescriber = next((c for c in clinicians if c.is_prescriber), None)
    if prescriber is not None:
        InvitePreference.objects.get_or_create(clinician=prescriber)
    therapist = next((c for c in clinicians if c.is_therapist), None)
    if therapist is not None:
        calendar, _ = ExternalCalendar.objects.get_or_create(
            clinician=therapist,
            defaults={"url": f"{settings.SITE_URL}/static/demo/own-calendar.ics"},
        )
        if not calendar.busy_blocks.exists():
            now = timezone.now()
            intervals = busy_intervals(
                SAMPLE_CALENDAR.read_bytes(),
                clinic.tz,
                now - timedelta(days=1),
                now + timedelta(days=settings.BOOKING_HORIZON_DAYS + 1),
            )
            store_busy_blocks(calendar, intervals, etag="", now=now)
    return issued


@dataclass
class SchedulingDemo:
    """What the later layers and the command's report need from this one."""

    clinic: Clinic
    patients: list[Patient]
    booked: list[Visit] = field(default_factory=list)
    feeds: list[tuple[Clinician, str]] = field(default_factory=list)


# Denver's first three patients were screened there (plans.demo) and come for
# their preparation; the fourth is new and comes for the screening.
DENVER_BOOKINGS = [(3, "screening"), (0, "preparation"), (1, "preparation"), (2, "preparation")]


# The clinic's own instructions in Spanish, for every demo visit type: a Spanish
# reader's plan reads Spanish throughout. A type without them falls back to
# English, and the desk's patient page says which (tests/test_patient_language.py).
SPANISH_TELEHEALTH_PREPARATION = (
    "Conéctese desde un lugar tranquilo y privado, con buena conexión. El enlace de video "
    "está en la página de su cita y le llega una hora antes de la sesión."
)


def spanish_dosing_preparation(route_note: str, fasting: str) -> str:
    """``dosing_preparation``'s points in Spanish."""
    return points(
        route_note,
        fasting,
        "Nada de alcohol, cannabis ni otras drogas 24 horas antes y después de la sesión.",
        "Tome sus medicinas de siempre con sorbos de agua. La lamotrigina y las "
        "benzodiacepinas pueden tener que dejarse unas 6 horas antes y después, solo si "
        "su médico se lo indica. Las medicinas para la presión se toman como siempre.",
        "Pida a un adulto que le lleve a casa. No conduzca ni tome decisiones importantes "
        "hasta el día siguiente, después de dormir bien.",
        "Traiga ropa cómoda, una manta, un antifaz y música si quiere.",
    )


def spanish_aftercare(phone: str) -> str:
    """``aftercare``'s points in Spanish."""
    return points(
        "Descanse el resto del día; no conduzca hasta el día siguiente, después de dormir bien.",
        "Beba agua y coma algo ligero cuando se sienta con ganas.",
        "Su sesión de integración y su enlace de video están en la página de su cita.",
        f"Si tiene preguntas o se siente mal, llame a la clínica al {phone}. En una "
        "emergencia llame al 911.",
    )


def spanish_instructions(phone: str) -> dict[str, tuple[str, str]]:
    """{visit type slug: (preparation, aftercare)} in Spanish, as ``visit_types`` has them."""
    dosing_aftercare = spanish_aftercare(phone)
    four_hours = "Nada sólido 4 horas antes; líquidos claros hasta 1 hora antes."
    return {
        "screening": (
            "Traiga una identificación con foto y una lista de todas las medicinas y "
            "suplementos que toma. Por favor llegue 10 minutos antes.",
            "",
        ),
        "preparation": (SPANISH_TELEHEALTH_PREPARATION, ""),
        "integration": (SPANISH_TELEHEALTH_PREPARATION, ""),
        "maintenance": (SPANISH_TELEHEALTH_PREPARATION, ""),
        "iv-infusion": (
            spanish_dosing_preparation(
                "La infusión intravenosa dura unos 40-60 minutos; después descansa con "
                "nosotros hasta una hora.",
                "Nada sólido 6 horas antes; líquidos claros hasta 2 horas antes.",
            ),
            dosing_aftercare,
        ),
        "im-dosing": (
            spanish_dosing_preparation(
                "La dosis intramuscular hace efecto en minutos y dura alrededor de una hora; "
                "le acompañamos todo el tiempo.",
                four_hours,
            ),
            dosing_aftercare,
        ),
        "lozenge-dosing": (
            spanish_dosing_preparation(
                "La pastilla sublingual se disuelve en la boca sin tragarla; la sesión dura "
                "unas 2,5-3 horas.",
                four_hours,
            ),
            dosing_aftercare,
        ),
        "intranasal-dosing": (
            spanish_dosing_preparation(
                "Las sesiones de esketamina intranasal (Spravato) incluyen al menos 2 horas de "
                "observación; le tomamos la presión antes de la dosis y unos 40 minutos después.",
                "Nada de comer 2 horas antes ni de beber 30 minutos antes de la sesión.",
            ),
            dosing_aftercare,
        ),
    }


def seed_translated_instructions(clinic: Clinic, types: dict[str, VisitType]) -> None:
    for slug, (preparation, aftercare) in spanish_instructions(clinic.phone).items():
        upsert(
            TranslatedInstructions,
            {"visit_type": types[slug], "language": "es"},
            {"preparation_instructions": preparation, "aftercare_instructions": aftercare},
        )


def seed() -> SchedulingDemo:
    """Seed the scheduling layer of the demo clinic."""
    clinic = seed_clinic()
    clinicians = seed_staff(clinic)
    types = seed_visit_types(clinic)
    seed_translated_instructions(clinic, types)
    patients = seed_patients(clinic)
    booked = seed_visits(clinic, types, patients, clinicians)
    return SchedulingDemo(clinic, patients, booked, seed_calendars(clinic))


def seed_second_location() -> SchedulingDemo:
    """Seed the scheduling layer of the organisation's Denver location, the same way."""
    clinic = seed_clinic(DENVER)
    clinicians = seed_staff(clinic, DENVER_STAFF)
    types = seed_visit_types(clinic)
    seed_translated_instructions(clinic, types)
    upsert(
        TranslatedPolicy,
        {"clinic": clinic, "language": "es"},
        {"late_cancellation_policy": DENVER_SPANISH_POLICY},
    )
    patients = seed_patients(clinic, patient_rows(DENVER_PATIENT_NAMES, DENVER, area="303"))
    booked = seed_visits(clinic, types, patients, clinicians, DENVER_BOOKINGS)
    return SchedulingDemo(clinic, patients, booked, seed_calendars(clinic))
