"""``manage.py seed_demo``: a demo clinic with synthetic staff, patients and bookings.

It lives in ``notifications``, the top layer, because it seeds every layer:
the clinic and its people (scheduler), protocols (plans), reminder policies.

Idempotent: every row is found by a natural key (slug, username, email, name) and
brought back to its demo values, so a second run writes the same rows and adds
none. Demo visits are booked only for patients who have no visit of that type
yet, so reruns on later days do not pile up bookings. All names, numbers (the
fictional 555-01xx range) and addresses are made up.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import models, transaction
from django.utils import timezone

from notifications.demo import seed_reminder_policies
from plans.demo import seed_protocols, seed_screenings
from scheduler import booking
from scheduler.availability import free_slots
from scheduler.demo import seed_calendars
from scheduler.models import (
    Capability,
    Clinic,
    Clinician,
    ClinicianRole,
    ConsentMethod,
    DosingRoute,
    Modality,
    OpeningHours,
    Patient,
    Room,
    Visit,
    VisitKind,
    VisitType,
    Weekday,
    WorkingHours,
)

CLINIC = {
    "slug": "riverside",
    "name": "Riverside Wellness Clinic",
    "time_zone": "America/New_York",
    "phone": "(212) 555-0100",
    "address": "48 Example Avenue, Suite 300\nRiverside, NY 10099",
}

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


FRONT_DESK, CLINICIANS, CLINIC_ADMINS = "Front desk", "Clinicians", "Clinic admins"

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
    Staff("frontdesk", "Robin", "Ashdown", "Front desk", FRONT_DESK),
    Staff("admin", "Sam", "Keeper", "Clinic admin (superuser)", CLINIC_ADMINS),
]

# Front desk books and changes; clinicians look; clinic admins run the place.
# "*" is every model of the scheduler app.
# The apps whose models the demo groups get permissions on.
DEMO_APPS = ("scheduler", "plans", "notifications")
GROUP_PERMISSIONS = {
    FRONT_DESK: {
        "view": "*",
        "add": ["visit", "patient", "careplan"],
        # The front desk resends failed messages and works the inbox of replies.
        "change": ["visit", "patient", "careplan", "message", "inboundmessage"],
    },
    # Clinicians see the schedule and, in the admin, only their own visits and
    # patients; messages, replies, screenings and plans of other clinicians'
    # patients are not theirs to browse.
    CLINICIANS: {
        "view": [
            "clinic",
            "openinghours",
            "closure",
            "room",
            "capability",
            "clinician",
            "workinghours",
            "timeoff",
            "visittype",
            "visit",
            "patient",
            "protocol",
            "protocolstep",
        ]
    },
    CLINIC_ADMINS: {"view": "*", "add": "*", "change": "*", "delete": "*"},
}

# -- instructions (DOMAIN.md; clinics edit them) -----------------------------------

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


def dosing_preparation(route_note: str, fasting: str) -> str:
    return "\n".join(
        f"- {line}" for line in (route_note, fasting, NO_SUBSTANCES, MEDICINES, RIDE_HOME, BRING)
    )


def aftercare(phone: str) -> str:
    return "\n".join(
        f"- {line}"
        for line in (
            "Rest for the rest of the day; no driving until the next day, after a "
            "restful night's sleep.",
            "Drink water and eat something light when you feel ready.",
            "Your integration session and its video link are on your visit page.",
            f"Questions or feeling unwell: call the clinic at {phone}. In an emergency call 911.",
        )
    )


TELEHEALTH_PREPARATION = (
    "Join from a quiet, private place with a stable connection. The video link is on "
    "your visit page and arrives about an hour before the session."
)


def visit_types(phone: str) -> list[dict]:
    dosing_aftercare = aftercare(phone)
    return [
        {
            "slug": "screening",
            "name": "Screening and evaluation",
            "kind": VisitKind.SCREENING,
            "duration_minutes": 60,
            "modality": Modality.IN_PERSON,
            "room_capability": "consult",
            "clinician_role": ClinicianRole.PRESCRIBER,
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
            "clinician_role": ClinicianRole.THERAPIST,
            "price": "175.00",
            "preparation_instructions": TELEHEALTH_PREPARATION,
        },
        {
            "slug": "iv-infusion",
            "name": "IV infusion session",
            "kind": VisitKind.DOSING,
            "dosing_route": DosingRoute.IV,
            "duration_minutes": 120,
            "monitoring_minutes": 60,
            "modality": Modality.IN_PERSON,
            "room_capability": "infusion-chair",
            "clinician_role": ClinicianRole.PRESCRIBER,
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
            "duration_minutes": 105,
            "monitoring_minutes": 60,
            "modality": Modality.IN_PERSON,
            "room_capability": "vitals-monitoring",
            "clinician_role": ClinicianRole.PRESCRIBER,
            "price": "425.00",
            "preparation_instructions": dosing_preparation(
                "The intramuscular dose works within minutes and for about an hour; we "
                "monitor you throughout.",
                "No solid food for 4 hours before; clear liquids until 1 hour before.",
            ),
            "aftercare_instructions": dosing_aftercare,
        },
        {
            # A nurse on site is enough to monitor an oral dose (DOMAIN.md: "a
            # prescriber or nurse on site"); prescribers stay free for IV/IM.
            "slug": "lozenge-dosing",
            "name": "Lozenge dosing session",
            "kind": VisitKind.DOSING,
            "dosing_route": DosingRoute.LOZENGE,
            "duration_minutes": 165,
            "monitoring_minutes": 120,
            "modality": Modality.IN_PERSON,
            "room_capability": "vitals-monitoring",
            "clinician_role": ClinicianRole.NURSE,
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
            "duration_minutes": 120,
            "monitoring_minutes": 120,
            "modality": Modality.IN_PERSON,
            "room_capability": "rems-certified",
            "clinician_role": ClinicianRole.PRESCRIBER,
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
            "clinician_role": ClinicianRole.THERAPIST,
            "price": "175.00",
            "preparation_instructions": TELEHEALTH_PREPARATION,
        },
        {
            "slug": "maintenance",
            "name": "Maintenance check-in",
            "kind": VisitKind.MAINTENANCE,
            "duration_minutes": 30,
            "modality": Modality.TELEHEALTH,
            "clinician_role": ClinicianRole.PRESCRIBER,
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
FIRST_CONSENT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def patient_rows() -> list[dict]:
    rows = []
    for index, (first, last) in enumerate(PATIENT_NAMES):
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
                "mobile": f"(212) 555-{100 + number:04d}",
                "time_zone": "America/Chicago" if index in (4, 13) else CLINIC["time_zone"],
                "contact_by_sms": True,
                "contact_by_email": True,
                "sms_consent_at": consent_at,
                "sms_consent_method": CONSENT_METHODS[index % 3] if consented else "",
                "sms_opted_out_at": consent_at + timedelta(days=30) if index == 9 else None,
            }
        )
    return rows


# (patient index, visit type slug): the first free slot from a few days out, so
# the demo schedule spreads over the coming two weeks.
DEMO_BOOKINGS = [
    (0, "screening"),
    (1, "screening"),
    (2, "screening"),
    (0, "preparation"),
    (1, "preparation"),
    (3, "preparation"),
    (4, "integration"),
    (5, "integration"),
]
BOOKING_WINDOW_DAYS = 14


def upsert(model: type[models.Model], lookup: dict, values: dict) -> tuple[models.Model, bool]:
    """update_or_create, but validated: full_clean normalises mobiles to E.164 and
    refuses demo data the models would refuse from staff."""
    instance = model.objects.filter(**lookup).first()
    created = instance is None
    if created:
        instance = model(**lookup)
    for name, value in values.items():
        setattr(instance, name, value)
    instance.full_clean()
    instance.save()
    return instance, created


class Command(BaseCommand):
    help = "Create or refresh the demo clinic (synthetic data only). Safe to run again."

    def handle(self, *args, **options):
        with transaction.atomic():
            clinic = self.seed_clinic()
            groups = self.seed_groups()
            clinicians = self.seed_staff(clinic, groups)
            types = self.seed_visit_types(clinic)
            patients = self.seed_patients(clinic)
            booked = self.seed_visits(clinic, types, patients, clinicians)
            self.protocols = seed_protocols(clinic)
            seed_screenings(patients)
            self.feeds = seed_calendars(clinic)
            seed_reminder_policies(clinic)
        self.report(clinic, booked)

    def seed_clinic(self) -> Clinic:
        values = {key: value for key, value in CLINIC.items() if key != "slug"}
        clinic, _ = upsert(Clinic, {"slug": CLINIC["slug"]}, values)
        self.replace_weekly(OpeningHours, {"clinic": clinic}, OPENING_HOURS)
        capabilities = {
            slug: upsert(Capability, {"slug": slug}, {"name": name})[0]
            for slug, name in CAPABILITIES.items()
        }
        for name, slugs in ROOMS.items():
            room, _ = upsert(Room, {"clinic": clinic, "name": name}, {})
            room.capabilities.set([capabilities[slug] for slug in slugs])
        return clinic

    def replace_weekly(self, model, owner: dict, hours) -> None:
        """Make the owner's weekly rows exactly ``hours``; rows already right keep their ids."""
        keep = []
        for weekday, opens, closes in hours:
            row, _ = model.objects.get_or_create(
                **owner, weekday=weekday, opens=opens, closes=closes
            )
            keep.append(row.pk)
        model.objects.filter(**owner).exclude(pk__in=keep).delete()

    def seed_groups(self) -> dict[str, Group]:
        every_model = [
            model._meta.model_name
            for label in DEMO_APPS
            for model in apps.get_app_config(label).get_models()
        ]
        groups = {}
        for name, grants in GROUP_PERMISSIONS.items():
            codenames = [
                f"{action}_{model}"
                for action, names in grants.items()
                for model in (every_model if names == "*" else names)
            ]
            group, _ = Group.objects.get_or_create(name=name)
            group.permissions.set(
                Permission.objects.filter(
                    content_type__app_label__in=DEMO_APPS, codename__in=codenames
                )
            )
            groups[name] = group
        return groups

    def seed_staff(self, clinic: Clinic, groups: dict[str, Group]) -> dict[str, Clinician]:
        User = get_user_model()
        clinicians = {}
        for member in STAFF:
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
            user.groups.add(groups[member.group])
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
            self.replace_weekly(WorkingHours, {"clinician": clinician}, member.hours)
            clinicians[member.username] = clinician
        return clinicians

    def seed_visit_types(self, clinic: Clinic) -> dict[str, VisitType]:
        capabilities = {capability.slug: capability for capability in Capability.objects.all()}
        types = {}
        for spec in visit_types(clinic.phone):
            values = {
                "dosing_route": "",
                "monitoring_minutes": 0,
                "aftercare_instructions": "",
                **spec,
                "price": Decimal(spec["price"]),
                "room_capability": capabilities.get(spec.get("room_capability")),
            }
            slug = values.pop("slug")
            types[slug], _ = upsert(VisitType, {"clinic": clinic, "slug": slug}, values)
        return types

    def seed_patients(self, clinic: Clinic) -> list[Patient]:
        patients = []
        for row in patient_rows():
            values = dict(row)
            email = values.pop("email")
            patient, _ = upsert(Patient, {"clinic": clinic, "email": email}, values)
            patients.append(patient)
        return patients

    def seed_visits(self, clinic, types, patients, clinicians) -> list[Visit]:
        today = timezone.localdate(timezone=clinic.tz)
        last_day = today + timedelta(days=BOOKING_WINDOW_DAYS)
        booked = []
        for number, (index, slug) in enumerate(DEMO_BOOKINGS):
            patient, visit_type = patients[index], types[slug]
            if Visit.objects.filter(patient=patient, visit_type=visit_type).exists():
                continue
            # Take turns among qualified clinicians, else the earliest slot would
            # give every visit to the same person.
            qualified = [c for c in clinicians.values() if c.has_role(visit_type.clinician_role)]
            turn = qualified[number % len(qualified)]
            first_day = today + timedelta(days=1 + number)
            slots = free_slots(
                visit_type, first_day, last_day, clinicians=[turn], patient=patient, limit=1
            ) or free_slots(visit_type, first_day, last_day, patient=patient, limit=1)
            if not slots:
                self.stderr.write(f"No free slot for {visit_type} for {patient}; skipped.")
                continue
            slot = slots[0]
            booked.append(
                booking.book(
                    patient=patient,
                    visit_type=visit_type,
                    clinician=slot.clinician,
                    start=slot.start,
                    room=slot.room,
                )
            )
        return booked

    def report(self, clinic: Clinic, booked: list[Visit]) -> None:
        out = self.stdout
        out.write(self.style.SUCCESS(f"Demo clinic ready: {clinic} ({clinic.time_zone})"))
        counts = [
            ("rooms", clinic.rooms.count()),
            ("clinicians", clinic.clinicians.count()),
            ("visit types", clinic.visit_types.count()),
            ("patients", clinic.patients.count()),
            ("visits", Visit.objects.filter(patient__clinic=clinic).count()),
        ]
        out.write("  " + ", ".join(f"{count} {label}" for label, count in counts))
        out.write(f"  {len(booked)} visits booked by this run.")
        out.write("  Protocols: " + ", ".join(p.slug for p in self.protocols))
        out.write("")
        out.write("Staff logins (demo passwords; never use them on a real installation):")
        width = max(len(member.username) for member in STAFF) + 2
        for member in STAFF:
            out.write(f"  {member.username:<{width}}{member.password:<24}{member.role}")
        out.write("")
        out.write(f"Admin: {settings.SITE_URL}/admin/")
        if self.feeds:
            # Only the token's hash is stored: these addresses can be shown now or never.
            out.write("")
            out.write("Calendar feeds issued by this run (subscribe from any calendar app):")
            for clinician, url in self.feeds:
                out.write(f"  {clinician}: {url}")
