"""The synthetic clinic network the benchmarks run against.

One clinic (the front-desk pages serve one clinic per installation) with 100
clinicians, 20 rooms, 5,000 patients, 100,000 visits over 12 months and
300,000 messages in every state, all bulk-created. The demo clinic's own
configuration (visit types, protocols, reminder policies, staff logins) comes
from ``seed_demo``; the bulk rows are laid out on a grid that can never
overlap, so the data passes every overlap invariant the booking rules enforce
(PostgreSQL's exclusion constraints check it on the way in); public holidays
and the travel gap it ignores, as it never books through the rules:

- each clinician fills slots of a fixed grid inside their working hours:
  therapists hourly (50-minute sessions), prescribers every 2 hours, nurses
  every 3 hours (165-minute lozenge and 150-minute Spravato sessions); no visit
  type outlasts its role's slot (checked as the rows are made);
- nurses and prescribers draw rooms from separate pools, so a room is only
  ever taken on one grid;
- each patient belongs to one clinician, who sees at most one patient a slot.

The same seed gives the same rows: dates hang off a fixed Monday, not today.
"""

import hashlib
import random
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction

from notifications.models import PRIORITY, Channel, Message, ReminderRule, Status
from scheduler.models import (
    BLOCKING_STATUSES,
    Capability,
    Clinic,
    Clinician,
    Patient,
    Room,
    Visit,
    VisitKind,
    VisitParticipant,
    VisitStatus,
    VisitType,
    Weekday,
    WorkingHours,
)

FIRST_DAY = date(2031, 1, 6)  # a Monday; the data covers 52 weeks from here
WEEKS = 52
# "Now" for every measurement: a Tuesday afternoon three months in, so feeds
# (90 days back) and plans (months ahead) both meet a full schedule.
NOW_DAY = FIRST_DAY + timedelta(days=7 * 13 + 1)
NOW_TIME = clock(14, 0)

# Fictional numbers: 555-0100 to 555-0199 in every North American area code.
AREA_CODES = [201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219]
AREA_CODES += [224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262]
AREA_CODES += [267, 269, 270, 276, 281, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313]
AREA_CODES += [314, 315]

FIRST_NAMES = [
    "Avery",
    "Blake",
    "Casey",
    "Dana",
    "Emery",
    "Finley",
    "Gray",
    "Harper",
    "Indigo",
    "Jules",
    "Kai",
    "Logan",
]
LAST_NAMES = [
    "Applewood",
    "Birchfield",
    "Cloudberry",
    "Driftwood",
    "Elmsworth",
    "Foxglove",
    "Goldfinch",
]
LAST_NAMES += [
    "Hollyhock",
    "Ivybridge",
    "Juniper",
    "Kettleby",
    "Larkspur",
    "Moonfield",
    "Nettlefold",
]

ROLE_GRID = {  # role -> (first slot, slot length, last start) in local wall-clock hours
    "therapist": (8, 1, 17),
    "prescriber": (8, 2, 16),
    "nurse": (8, 3, 14),
}
ROLE_TYPES = {  # what each role's slots hold, with weights
    "therapist": {"preparation": 1, "integration": 3},
    "prescriber": {"maintenance": 5, "screening": 1, "iv-infusion": 2, "im-dosing": 1},
    # Spravato's 150 minutes (arrival and dose, two hours' monitoring) need the 3-hour grid.
    "nurse": {"lozenge-dosing": 1, "intranasal-dosing": 1},
}
NURSE_ROOMS = 6  # rooms kept for the 3-hour grid


@dataclass(frozen=True)
class Scale:
    clinicians: int = 100
    rooms: int = 20
    patients: int = 5_000
    visits: int = 100_000
    messages: int = 300_000
    feed_events: int = 2_000  # visits of the clinician whose feed is measured

    def divided(self, by: int) -> "Scale":
        return Scale(
            clinicians=max(self.clinicians // by, 10),
            rooms=max(self.rooms // by, 8),
            patients=max(self.patients // by, 50),
            visits=self.visits // by,
            messages=self.messages // by,
            feed_events=max(self.feed_events // by, 10),
        )


FULL = Scale()
QUICK = FULL.divided(20)


@dataclass
class Dataset:
    scale: Scale
    seed: int
    clinic: Clinic
    now: datetime
    feed_clinician: Clinician
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    fingerprint: str = ""


def progress(label: str, done: int, total: int, started: float) -> None:
    if sys.stderr.isatty() or done == total:
        rate = done / max(time.monotonic() - started, 1e-9)
        end = "\n" if done == total else "\r"
        print(f"  {label}: {done:,}/{total:,} ({rate:,.0f}/s)", end=end, file=sys.stderr)


def bulk(model, rows: list, label: str, batch: int = 5_000) -> list:
    started = time.monotonic()
    created = []
    for first in range(0, len(rows), batch):
        created += model.objects.bulk_create(rows[first : first + batch], batch_size=batch)
        progress(label, len(created), len(rows), started)
    return created


def build(scale: Scale = FULL, seed: int = 20310106, say: Callable[[str], None] = print) -> Dataset:
    """Create the dataset in an empty, migrated database."""
    started = time.monotonic()
    rng = random.Random(seed)
    say("Seeding the demo clinic's configuration ...")
    call_command("seed_demo", stdout=_Quiet(), stderr=_Quiet())
    clinic = Clinic.objects.installation()
    now = datetime.combine(NOW_DAY, NOW_TIME, tzinfo=clinic.tz).astimezone(UTC)
    # seed_demo books its few visits around today, years before the data's
    # "now"; their reminders would only be found stale by every dispatch pass.
    Message.objects.filter(status=Status.PENDING).delete()
    # Rows are stamped (created_at, updated_at) at the data's "now", not the
    # build's wall clock: the same seed gives the same rows, stamps included.
    with time_machine.travel(now, tick=False), transaction.atomic():
        clinicians = _clinicians(clinic, scale, rng)
        rooms = _rooms(clinic, scale)
        patients = _patients(clinic, scale, rng, clinicians)
        visits = _visits(clinic, scale, rng, clinicians, rooms, patients, now)
        messages = _messages(scale, rng, visits, now)
    # Planner statistics and PostgreSQL's visibility map, as a live database has
    # them (autovacuum); VACUUM cannot run inside a transaction (the tests' one).
    vacuum = connection.vendor == "postgresql" and not connection.in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
    dataset = Dataset(scale, seed, clinic, now, clinicians[0][0])
    dataset.counts = {
        "clinicians": Clinician.objects.filter(clinic=clinic).count(),
        "rooms": Room.objects.filter(clinic=clinic).count(),
        "patients": Patient.objects.filter(clinic=clinic).count(),
        "visits": Visit.objects.count(),
        "messages": Message.objects.count(),
        "bulk visits": len(visits),
        "bulk messages": messages,
    }
    dataset.fingerprint = fingerprint(clinic)
    dataset.seconds = time.monotonic() - started
    return dataset


def fingerprint(clinic: Clinic) -> str:
    """A digest of the bulk rows by their content (not their ids), to compare two builds."""
    digest = hashlib.sha256()
    first = datetime.combine(FIRST_DAY, clock(0), tzinfo=clinic.tz)
    visits = Visit.objects.filter(patient__clinic=clinic, start__gte=first).order_by("uid")
    for row in visits.values_list(
        "uid",
        "patient__last_name",
        "clinician__display_name",
        "room__name",
        "start",
        "end",
        "status",
        "updated_at",
    ).iterator(chunk_size=5_000):
        digest.update(repr(row).encode())
    messages = Message.objects.filter(patient__clinic=clinic, visit__start__gte=first).order_by(
        "visit__uid", "send_at", "channel", "purpose"
    )
    for row in messages.values_list(
        "visit__uid", "purpose", "channel", "status", "send_at", "provider_id", "sent_at"
    ).iterator(chunk_size=5_000):
        digest.update(repr(row).encode())
    return digest.hexdigest()[:16]


class _Quiet:
    def write(self, *args, **kwargs):
        pass

    def flush(self):
        pass


def _role_of(clinician: Clinician) -> str:
    if clinician.is_nurse:
        return "nurse"
    return "prescriber" if clinician.is_prescriber else "therapist"


def _clinicians(clinic: Clinic, scale: Scale, rng: random.Random) -> list[tuple[Clinician, str]]:
    """Every clinician with a role; the demo's own first, then synthetic ones up to the scale.

    The first one returned is a therapist: their feed is the one measured.
    """
    existing = list(Clinician.objects.filter(clinic=clinic).order_by("pk"))
    missing = scale.clinicians - len(existing)
    roles = ["therapist"] * 6 + ["prescriber"] * 3 + ["nurse"]
    User = get_user_model()
    users = bulk(
        User,
        [
            User(
                username=f"bench-clinician-{n:03d}",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                email=f"bench-clinician-{n:03d}@example.com",
                is_staff=True,
            )
            for n in range(missing)
        ],
        "clinician accounts",
    )
    new = bulk(
        Clinician,
        [
            Clinician(
                user=user,
                clinic=clinic,
                display_name=f"{user.first_name} {user.last_name} {n:03d}",
                is_therapist=roles[n % len(roles)] == "therapist",
                is_prescriber=roles[n % len(roles)] == "prescriber",
                is_nurse=roles[n % len(roles)] == "nurse",
                telehealth_link=f"https://video.example.com/room-{n:03d}",
            )
            for n, user in enumerate(users)
        ],
        "clinicians",
    )
    weekdays = [Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY]
    weekdays.append(Weekday.FRIDAY)
    bulk(
        WorkingHours,
        [
            WorkingHours(clinician=c, weekday=day, opens=clock(8), closes=clock(18))
            for c in new
            for day in weekdays
        ],
        "working hours",
    )
    everyone = [(c, _role_of(c)) for c in existing + new]
    # The measured feed belongs to a synthetic therapist (full-day hours).
    therapist = next(pair for pair in reversed(everyone) if pair[1] == "therapist")
    everyone.remove(therapist)
    return [therapist, *everyone]


def _rooms(clinic: Clinic, scale: Scale) -> list[Room]:
    capabilities = {c.slug: c for c in Capability.objects.all()}
    mixes = [
        ["vitals-monitoring", "rems-certified"],
        ["infusion-chair", "vitals-monitoring", "rems-certified"],
        ["consult"],
        ["infusion-chair", "vitals-monitoring"],
    ]
    count = Room.objects.filter(clinic=clinic).count()
    for n in range(scale.rooms - count):
        room = Room.objects.create(clinic=clinic, name=f"Room {n + 1:02d}")
        # The nurses' pool must monitor vital signs.
        mix = mixes[0] if n < NURSE_ROOMS else mixes[n % len(mixes)]
        room.capabilities.set([capabilities[slug] for slug in mix])
    return list(Room.objects.filter(clinic=clinic).prefetch_related("capabilities").order_by("pk"))


def _patients(clinic, scale: Scale, rng: random.Random, clinicians) -> list[Patient]:
    zones = ["America/New_York"] * 8 + ["America/Chicago", "America/Los_Angeles"]
    consent_from = datetime(2030, 6, 1, tzinfo=UTC)
    rows = []
    for n in range(scale.patients):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        consented = rng.random() < 0.9
        rows.append(
            Patient(
                clinic=clinic,
                first_name=first,
                last_name=f"{last}-{n:04d}",
                date_of_birth=date(1950 + n % 50, 1 + n % 12, 1 + n % 28),
                mobile=f"+1{AREA_CODES[n // 100 % len(AREA_CODES)]}5550{100 + n % 100}",
                email=f"patient{n:04d}@example.com",
                time_zone=rng.choice(zones),
                contact_by_sms=True,
                contact_by_email=True,
                sms_consent_at=consent_from + timedelta(days=n % 200) if consented else None,
                sms_consent_method="web_form" if consented else "",
                sms_opted_out_at=(
                    consent_from + timedelta(days=250) if consented and n % 97 == 0 else None
                ),
            )
        )
    return bulk(Patient, rows, "patients")


def _slots(clinician: Clinician, role: str, tz, hours: dict[int, list]) -> list[datetime]:
    """Every grid slot within the clinician's working hours over the year, in order."""
    first, step, last = ROLE_GRID[role]
    slots = []
    for offset in range(WEEKS * 7):
        day = FIRST_DAY + timedelta(days=offset)
        for opens, closes in hours.get(day.weekday(), ()):
            for hour in range(first, last + 1, step):
                start = datetime.combine(day, clock(hour), tzinfo=tz)
                if opens <= clock(hour) and hour + step <= closes.hour + closes.minute / 60:
                    slots.append(start)
    return slots


def _visits(clinic, scale: Scale, rng, clinicians, rooms, patients, now) -> list[Visit]:
    tz = clinic.tz
    types = {
        vt.slug: vt for vt in VisitType.objects.filter(clinic=clinic).prefetch_related("staffing")
    }
    for role, weights in ROLE_TYPES.items():  # a longer visit would overlap the next slot
        slot = timedelta(hours=ROLE_GRID[role][1])
        for slug in weights:
            if types[slug].duration > slot:
                raise ValueError(f"{slug} ({types[slug].duration}) outlasts a {role}'s {slot} slot")
    hours: dict[int, dict[int, list]] = {}
    for row in WorkingHours.objects.filter(clinician__clinic=clinic):
        hours.setdefault(row.clinician_id, {}).setdefault(row.weekday, []).append(
            (row.opens, row.closes)
        )
    # Which slots get a visit: the measured therapist's first ``feed_events``
    # (a full diary), then an even share of everyone else's.
    chosen: list[tuple[Clinician, str, datetime]] = []
    feed_clinician, feed_role = clinicians[0]
    feed_slots = _slots(feed_clinician, feed_role, tz, hours.get(feed_clinician.pk, {}))
    chosen += [
        (feed_clinician, feed_role, s) for s in sorted(rng.sample(feed_slots, scale.feed_events))
    ]
    others = [
        (c, role, s) for c, role in clinicians[1:] for s in _slots(c, role, tz, hours.get(c.pk, {}))
    ]
    rng.shuffle(others)
    chosen += others  # taken in this order until there are enough visits

    patients_of = {c.pk: [] for c, _ in clinicians}
    for n, patient in enumerate(patients):
        patients_of[clinicians[n % len(clinicians)][0].pk].append(patient)
    room_pools = {"nurse": rooms[:NURSE_ROOMS], "prescriber": rooms[NURSE_ROOMS:]}
    taken: dict[tuple[str, datetime], set[int]] = {}  # (room pool, slot) -> rooms in use
    rows = []
    for clinician, role, start in chosen:
        if len(rows) == scale.visits:
            break
        weights = ROLE_TYPES[role]
        slug = rng.choices(list(weights), weights=list(weights.values()))[0]
        visit_type = types[slug]
        room = None
        if visit_type.room_capability_id:
            in_use = taken.setdefault((role, start), set())
            room = next(
                (r for r in room_pools[role] if r.pk not in in_use and _fits(r, visit_type)),
                None,
            )
            if room is None:  # every suitable room is taken at this hour
                if role == "nurse":
                    continue
                visit_type = types["maintenance"]
            else:
                in_use.add(room.pk)
        own = patients_of[clinician.pk]
        index = (start - datetime.combine(FIRST_DAY, clock(0), tzinfo=tz)).days * 10
        patient = own[(index + start.hour) % len(own)]
        end = start + timedelta(minutes=visit_type.duration_minutes)
        rows.append(
            Visit(
                uid=f"{uuid.UUID(int=rng.getrandbits(128), version=4)}@kap-scheduler",
                patient=patient,
                visit_type=visit_type,
                clinician=clinician,
                room=room,
                start=start,
                end=end,
                status=_visit_status(rng, end, now, clinician is feed_clinician),
                ride_home_arranged=visit_type.kind == VisitKind.DOSING and rng.random() < 0.8,
            )
        )
    rows.sort(key=lambda visit: (visit.start, visit.clinician_id))
    visits = bulk(Visit, rows, "visits")
    bulk(VisitParticipant, _guides(visits, clinicians), "therapists on dosing visits")
    return visits


def _guides(visits: list[Visit], clinicians) -> list[VisitParticipant]:
    """A therapist for each dosing visit, in the visit type's second place, for their part of it.

    Each from the therapists in turn, the first whose own visits (and the
    sessions they already guide) leave them free then, as the booking would
    insist; a dosing visit no therapist is free for keeps its monitor alone.
    """
    therapists = [c for c, role in clinicians if role == "therapist"]
    busy: dict[tuple[int, date], list[tuple[datetime, datetime]]] = defaultdict(list)
    for visit in visits:
        if visit.status in BLOCKING_STATUSES:
            busy[visit.clinician_id, visit.start.date()].append((visit.start, visit.end))
    rows = []
    for n, visit in enumerate(v for v in visits if v.visit_type.kind == VisitKind.DOSING):
        seats = visit.visit_type.seats
        if len(seats) < 2:
            continue
        start, end = seats[1].span(visit.start, visit.end)
        for turn in range(len(therapists)):
            therapist = therapists[(n + turn) % len(therapists)]
            held = busy[therapist.pk, start.date()]
            if all(end <= other_start or other_end <= start for other_start, other_end in held):
                if visit.status in BLOCKING_STATUSES:
                    held.append((start, end))
                rows.append(VisitParticipant.for_seat(visit, therapist, seats[1], 1))
                break
    return rows


def _fits(room: Room, visit_type: VisitType) -> bool:
    return visit_type.room_capability_id in {c.pk for c in room.capabilities.all()}


def _visit_status(rng, end: datetime, now: datetime, keep: bool) -> str:
    roll = rng.random()
    if end <= now:
        if roll < 0.05 and not keep:
            return VisitStatus.CANCELLED
        return VisitStatus.NO_SHOW if roll < 0.08 else VisitStatus.COMPLETED
    if roll < 0.04 and not keep:
        return VisitStatus.CANCELLED
    return VisitStatus.CONFIRMED if roll < 0.5 else VisitStatus.BOOKED


PAST_OUTCOMES = [  # what became of messages whose time has passed, with weights
    (Status.DELIVERED, 70),
    (Status.SENT, 8),
    (Status.UNDELIVERED, 2),
    (Status.FAILED, 2),
    (Status.SKIPPED, 3),
    (Status.SUPPRESSED, 10),
    (Status.CANCELLED, 5),
]


def _messages(scale: Scale, rng, visits: list[Visit], now: datetime) -> int:
    """About three messages a visit (``scale.messages`` in all), by the visit type's rules."""
    rules: dict[int, list[tuple[ReminderRule, str]]] = {}
    for rule in ReminderRule.objects.select_related("policy"):
        for channel in rule.channels:
            rules.setdefault(rule.policy.visit_type_id, []).append((rule, channel))
    statuses, weights = zip(*PAST_OUTCOMES, strict=True)
    per_visit = scale.messages / max(len(visits), 1)
    rows, made = [], 0
    started = time.monotonic()
    for n, visit in enumerate(visits):
        # Spread the remainder so the total comes out at exactly ``scale.messages``.
        count = int((n + 1) * per_visit) - int(n * per_visit)
        options = rules.get(visit.visit_type_id, [])
        for rule, channel in rng.sample(options, min(count, len(options))):
            send_at = rule.nominal_time(visit)
            status = Status.PENDING
            if send_at <= now:
                status = rng.choices(statuses, weights=weights)[0]
            elif visit.status == VisitStatus.CANCELLED:
                status = Status.CANCELLED
            accepted = status in (Status.DELIVERED, Status.SENT, Status.UNDELIVERED)
            rows.append(
                Message(
                    visit=visit,
                    patient_id=visit.patient_id,
                    rule=rule,
                    purpose=rule.purpose,
                    channel=channel,
                    visit_sequence=visit.sequence,
                    recipient="" if status == Status.PENDING else _recipient(visit, channel),
                    send_at=send_at,
                    expires_at=max(visit.start, send_at + timedelta(hours=12)),
                    status=status,
                    priority=PRIORITY[rule.purpose],
                    attempts=0 if status == Status.PENDING else 1,
                    provider_id=f"SM{rng.getrandbits(128):032x}" if accepted else "",
                    sent_at=send_at if accepted else None,
                    delivered_at=send_at + timedelta(seconds=5)
                    if status == Status.DELIVERED
                    else None,
                    error_code="30003" if status == Status.UNDELIVERED else "",
                    last_error="Unreachable handset" if status == Status.FAILED else "",
                )
            )
        if len(rows) >= 10_000:
            made += len(Message.objects.bulk_create(rows, batch_size=5_000))
            rows = []
            progress("messages", made, scale.messages, started)
    made += len(Message.objects.bulk_create(rows, batch_size=5_000))
    progress("messages", made, scale.messages, started)
    return made


def _recipient(visit: Visit, channel: str) -> str:
    patient = visit.patient
    return patient.mobile if channel == Channel.SMS else patient.email
