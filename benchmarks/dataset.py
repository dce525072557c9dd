"""The synthetic clinic network the benchmarks run against.

One clinic (``FULL``) with 100 clinicians, 20 rooms, 5,000 patients, 100,000
visits over 12 months and 300,000 messages in every state, all bulk-created;
or a network of ten (``NETWORK``: 1,000 clinicians, 50,000 patients,
1,000,000 visits), each clinic laid out as the one. The demo clinic's own
configuration (visit types, protocols, reminder policies, staff logins) comes
from ``seed_demo``; the network's further clinics get the same from the demo's
seeding functions. The bulk rows are laid out on a grid that can never
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

On PostgreSQL the rows go in through COPY (``fast``): the diary triggers
(scheduler/migrations/0018_diary_changes.py) are switched off for the two
tables whose rows they log and their rows written in one statement a batch,
and each visit's lead participant is written as ``Visit.objects.bulk_create``
writes it, so the tables end as the ORM path leaves them
(tests/test_benchmarks.py compares the two).
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
from django.db import connection, connections, transaction
from django.db.models import OuterRef, Subquery

from notifications import demo as notifications_demo
from notifications.models import PRIORITY, Channel, Message, ReminderRule, Status
from plans import demo as plans_demo
from scheduler import demo as scheduler_demo
from scheduler.models import (
    BLOCKING_STATUSES,
    Capability,
    Clinic,
    Clinician,
    DiaryChange,
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
    """The whole dataset; every clinic gets an equal share (``per_clinic``)."""

    clinicians: int = 100
    rooms: int = 20
    patients: int = 5_000
    visits: int = 100_000
    messages: int = 300_000
    feed_events: int = 2_000  # visits of the clinician whose feed is measured
    clinics: int = 1

    def divided(self, by: int) -> "Scale":
        """A smaller network of as many clinics, each still with every role and room pool."""
        share = self.per_clinic()
        smaller = Scale(
            clinicians=max(share.clinicians // by, 10),
            rooms=max(share.rooms // by, 8),
            patients=max(share.patients // by, 50),
            visits=share.visits // by,
            messages=share.messages // by,
            feed_events=max(self.feed_events // by, 10),
        )
        return smaller.times(self.clinics)

    def per_clinic(self) -> "Scale":
        return Scale(
            clinicians=self.clinicians // self.clinics,
            rooms=self.rooms // self.clinics,
            patients=self.patients // self.clinics,
            visits=self.visits // self.clinics,
            messages=self.messages // self.clinics,
            feed_events=self.feed_events,
        )

    def times(self, clinics: int) -> "Scale":
        """``clinics`` clinics of this size each (the feed's clinician is in the first)."""
        return Scale(
            clinicians=self.clinicians * clinics,
            rooms=self.rooms * clinics,
            patients=self.patients * clinics,
            visits=self.visits * clinics,
            messages=self.messages * clinics,
            feed_events=self.feed_events,
            clinics=clinics,
        )


FULL = Scale()
QUICK = FULL.divided(20)
NETWORK = FULL.times(10)  # 10 clinics, 1,000 clinicians, 50,000 patients, 1,000,000 visits

# The network's clinics after the demo's first: other states, other zones. (The demo's
# Denver location stays as seed_demo leaves it, an eleventh with a handful of visits.)
CITIES = [
    ("Chicago", "America/Chicago", "IL", "312"),
    ("Los Angeles", "America/Los_Angeles", "CA", "213"),
    ("Boston", "America/New_York", "MA", "617"),
    ("Seattle", "America/Los_Angeles", "WA", "206"),
    ("Austin", "America/Chicago", "TX", "512"),
    ("Phoenix", "America/Phoenix", "AZ", "602"),
    ("Atlanta", "America/New_York", "GA", "404"),
    ("Portland", "America/Los_Angeles", "OR", "503"),
    ("Minneapolis", "America/Chicago", "MN", "612"),
]


@dataclass
class Dataset:
    scale: Scale
    seed: int
    clinic: Clinic  # the first; the only one but in a network
    now: datetime
    feed_clinician: Clinician
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    fingerprint: str = ""
    clinics: list[Clinic] = field(default_factory=list)


def progress(label: str, done: int, total: int, started: float) -> None:
    if sys.stderr.isatty() or done == total:
        rate = done / max(time.monotonic() - started, 1e-9)
        end = "\n" if done == total else "\r"
        print(f"  {label}: {done:,}/{total:,} ({rate:,.0f}/s)", end=end, file=sys.stderr)


BATCH = 5_000
# Tables whose every row the diary triggers log, by the column naming the visit.
LOGGED = {Visit: "id", VisitParticipant: "visit_id"}


def bulk(model, rows: list, label: str, batch: int = BATCH, *, fast: bool = False) -> list:
    started = time.monotonic()
    created = []
    for first in range(0, len(rows), batch):
        created += insert(model, rows[first : first + batch], fast=fast)
        progress(label, len(created), len(rows), started)
    return created


def insert(model, rows: list, *, fast: bool) -> list:
    """``model.objects.bulk_create(rows)`` in one batch, or through COPY to the same end."""
    if not fast:
        return model.objects.bulk_create(rows, batch_size=len(rows) or None)
    _copy(model, rows)
    if model is Visit:  # as VisitQuerySet.bulk_create: each visit's lead, in a batch of its own
        _copy(VisitParticipant, [VisitParticipant.lead_of(visit) for visit in rows])
    return rows


def _copy(model, rows: list) -> None:
    """COPY the rows in with the ids, stamps and prepared values bulk_create would give them;
    what the diary triggers would log, in one statement after."""
    if not rows:
        return
    meta = model._meta
    table, fields = meta.db_table, list(meta.concrete_fields)
    # The connection itself, not django.db.connection's per-attribute lookup of it:
    # each value prepared asks for it (a third of the time, at a million rows).
    database = connections[connection.alias]
    columns = ", ".join(database.ops.quote_name(f.column) for f in fields)
    logged = LOGGED.get(model)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, meta.pk.column, len(rows)],
        )
        for row, (pk,) in zip(rows, cursor.fetchall(), strict=True):
            row.pk = pk
            row._state.adding, row._state.db = False, connection.alias
        if logged:
            # A table with checks still pending (the foreign keys are deferred
            # to the commit) cannot be altered: run them now, and from here on
            # as each statement ends (stricter, and as cheap).
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_diary_insert")
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [f.get_db_prep_save(f.pre_save(row, True), database) for f in fields]
                )
        if logged:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_diary_insert")
            # As the trigger writes them: one row per row, in order, in this transaction.
            cursor.execute(
                f"INSERT INTO {DiaryChange._meta.db_table} (visit_id, transaction) "
                "SELECT visit, pg_current_xact_id()::text::bigint "
                "FROM unnest(%s::bigint[]) WITH ORDINALITY AS logged(visit, n) ORDER BY n",
                [[getattr(row, logged) for row in rows]],
            )


def build(
    scale: Scale = FULL,
    seed: int = 20310106,
    say: Callable[[str], None] = print,
    *,
    fast: bool | None = None,
) -> Dataset:
    """Create the dataset in an empty, migrated database; ``fast`` (PostgreSQL's COPY)
    unless told, where the database is PostgreSQL."""
    started = time.monotonic()
    if fast is None:
        fast = connection.vendor == "postgresql"
    rng = random.Random(seed)
    say("Seeding the demo clinic's configuration ...")
    call_command("seed_demo", stdout=_Quiet(), stderr=_Quiet())
    first_clinic = Clinic.objects.installation()
    now = datetime.combine(NOW_DAY, NOW_TIME, tzinfo=first_clinic.tz).astimezone(UTC)
    clinics = [first_clinic]
    if scale.clinics > 1:
        say(f"Seeding {scale.clinics - 1} more clinics' configuration ...")
        clinics += _more_clinics(scale.clinics - 1)
    # seed_demo books its few visits around today, years before the data's
    # "now"; their reminders would only be found stale by every dispatch pass.
    Message.objects.filter(status=Status.PENDING).delete()
    share = scale.per_clinic()
    everyone, bulk_visits, messages = [], 0, 0
    # Rows are stamped (created_at, updated_at) at the data's "now", not the
    # build's wall clock: the same seed gives the same rows, stamps included.
    with time_machine.travel(now, tick=False), transaction.atomic():
        for number, clinic in enumerate(clinics):
            if len(clinics) > 1:
                say(f"Clinic {number + 1} of {len(clinics)}: {clinic.name} ...")
            tag = f"{number:02d}-" if number else ""
            clinicians = _clinicians(clinic, share, rng, tag, fast)
            rooms = _rooms(clinic, share)
            patients = _patients(clinic, share, rng, clinicians, tag, fast)
            visits = _visits(clinic, share, rng, clinicians, rooms, patients, now, fast)
            messages += _messages(share, rng, visits, now, fast)
            bulk_visits += len(visits)
            everyone.append(clinicians)
            del visits, patients
    # Planner statistics and PostgreSQL's visibility map, as a live database has
    # them (autovacuum). Not inside a transaction (the tests' own): PostgreSQL keeps
    # the table sizes ANALYZE counted when the rows are rolled back, and the later
    # tests of that database would be planned for rows that are not there.
    if not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    dataset = Dataset(scale, seed, first_clinic, now, everyone[0][0][0], clinics=clinics)
    dataset.counts = {
        **({"clinics": len(clinics)} if len(clinics) > 1 else {}),
        "clinicians": Clinician.objects.filter(clinic__in=clinics).count(),
        "rooms": Room.objects.filter(clinic__in=clinics).count(),
        "patients": Patient.objects.filter(clinic__in=clinics).count(),
        "visits": Visit.objects.count(),
        "messages": Message.objects.count(),
        "bulk visits": bulk_visits,
        "bulk messages": messages,
    }
    dataset.fingerprint = fingerprint(clinics)
    dataset.seconds = time.monotonic() - started
    return dataset


def _more_clinics(count: int) -> list[Clinic]:
    """Further locations configured as the demo's are: rooms, visit types, protocols, reminders."""
    if count > len(CITIES):
        raise ValueError(f"{count} more clinics asked for; CITIES names {len(CITIES)}")
    clinics = []
    for number, (city, zone, state, area) in enumerate(CITIES[:count]):
        clinic = scheduler_demo.seed_clinic(
            {
                "slug": f"riverside-{city.lower().replace(' ', '-')}",
                "name": f"Riverside Wellness {city}",
                "time_zone": zone,
                "phone": f"({area}) 555-01{number + 10:02d}",
                "address": f"{number + 1} Example Plaza\n{city}, {state} 00000",
                "country": "US",
                "subdivision": state,
            }
        )
        scheduler_demo.seed_visit_types(clinic)
        plans_demo.seed_protocols(clinic)
        notifications_demo.seed(clinic)
        clinics.append(clinic)
    return clinics


def fingerprint(clinics: list[Clinic]) -> str:
    """A digest of the bulk rows by their content (not their ids), to compare two builds:
    visits, their participants, what the diary log says of them, messages."""
    digest = hashlib.sha256()
    first = datetime.combine(FIRST_DAY, clock(0), tzinfo=clinics[0].tz)
    visits = Visit.objects.filter(patient__clinic__in=clinics, start__gte=first).order_by("uid")
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
    participants = VisitParticipant.objects.filter(visit__in=visits).order_by(
        "visit__uid", "position"
    )
    for row in participants.values_list(
        "visit__uid",
        "clinician__display_name",
        "role",
        "position",
        "joins_after_minutes",
        "stays_minutes",
        "start",
        "end",
        "holds_time",
    ).iterator(chunk_size=5_000):
        digest.update(repr(row).encode())
    # The log's rows naming these visits, in the order written.
    logged = (
        DiaryChange.objects.annotate(
            uid=Subquery(Visit.objects.filter(pk=OuterRef("visit_id")).values("uid"))
        )
        .filter(visit_id__in=visits.values("pk"))
        .order_by("pk")
    )
    for row in logged.values_list("uid").iterator(chunk_size=5_000):
        digest.update(repr(row).encode())
    messages = Message.objects.filter(
        patient__clinic__in=clinics, visit__start__gte=first
    ).order_by("visit__uid", "send_at", "channel", "purpose")
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


def _clinicians(
    clinic: Clinic, scale: Scale, rng: random.Random, tag: str, fast: bool
) -> list[tuple[Clinician, str]]:
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
                username=f"bench-clinician-{tag}{n:03d}",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                email=f"bench-clinician-{tag}{n:03d}@example.com",
                is_staff=True,
            )
            for n in range(missing)
        ],
        "clinician accounts",
        fast=fast,
    )
    new = bulk(
        Clinician,
        [
            Clinician(
                user=user,
                clinic=clinic,
                display_name=f"{user.first_name} {user.last_name} {tag}{n:03d}",
                is_therapist=roles[n % len(roles)] == "therapist",
                is_prescriber=roles[n % len(roles)] == "prescriber",
                is_nurse=roles[n % len(roles)] == "nurse",
                telehealth_link=f"https://video.example.com/room-{n:03d}",
            )
            for n, user in enumerate(users)
        ],
        "clinicians",
        fast=fast,
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
        fast=fast,
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


def _patients(clinic, scale: Scale, rng: random.Random, clinicians, tag: str, fast: bool):
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
                last_name=f"{last}-{tag}{n:04d}",
                date_of_birth=date(1950 + n % 50, 1 + n % 12, 1 + n % 28),
                mobile=f"+1{AREA_CODES[n // 100 % len(AREA_CODES)]}5550{100 + n % 100}",
                email=f"patient{tag}{n:04d}@example.com",
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
    return bulk(Patient, rows, "patients", fast=fast)


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


def _visits(clinic, scale: Scale, rng, clinicians, rooms, patients, now, fast) -> list[Visit]:
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
    visits = bulk(Visit, rows, "visits", fast=fast)
    guides = _guides(visits, clinicians)
    bulk(VisitParticipant, guides, "therapists on dosing visits", fast=fast)
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


def _messages(scale: Scale, rng, visits: list[Visit], now: datetime, fast: bool) -> int:
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
        if len(rows) >= BATCH:
            made += len(insert(Message, rows, fast=fast))
            rows = []
            progress("messages", made, scale.messages, started)
    made += len(insert(Message, rows, fast=fast))
    progress("messages", made, scale.messages, started)
    return made


def _recipient(visit: Visit, channel: str) -> str:
    patient = visit.patient
    return patient.mobile if channel == Channel.SMS else patient.email
