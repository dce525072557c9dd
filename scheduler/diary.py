"""Busy times read from the database, and kept in memory between plans.

A plan searches weeks of a dozen people's and rooms' diaries. Reading them
again for every plan was most of a plan's time on PostgreSQL (a round trip
for each block of days, 20-30 a plan). A ``Diary`` keeps the rows it has read,
by person or room and day, and what else plans read unchanged (a clinic's
set-up, a protocol's steps: ``Diary.setup``), for the life of the process.
Before each use it reads the change log (``DiaryChange``, written by the
database's own triggers on every write to a visit, a participant or a set-up
table, whoever makes it), reads the changed visits again and forgets the
set-up when that changed.

What a diary never does is decide a booking: booking checks against the
database inside its own transaction, with PostgreSQL's exclusion constraints
behind it. A diary a moment behind can only make a plan propose a time that
booking then refuses, and the plan page says so.

Kept only outside transactions: inside one, a read sees the transaction's
own uncommitted writes, and a rollback takes them back without a trace in
the log (``current_diary`` returns None there, and readers go to the
database as before).
"""

import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from scheduler.models import (
    BLOCKING_STATUSES,
    LONGEST_VISIT_MINUTES,
    DiaryChange,
    Visit,
    VisitParticipant,
)
from scheduler.periodic import every

LONGEST_VISIT = timedelta(minutes=LONGEST_VISIT_MINUTES)
# Busy times are read and kept by whole UTC days, numbered from DAY_ZERO.
DAY = timedelta(days=1)
DAY_ZERO = datetime(2000, 1, 1, tzinfo=UTC)
DAY_ZERO_ORDINAL = DAY_ZERO.toordinal()
EVER = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))

# A diary not used for this long is read afresh (the change log is kept
# CHANGES_KEPT, so a diary can always catch up from it).
IDLE_SECONDS = 15 * 60
# A day: far longer than any diary goes without reading it, and than any
# transaction that writes visits stays open (its rows are stamped when written).
CHANGES_KEPT = timedelta(days=1)
# More changes than this at once (a bulk load): start again rather than patch.
MOST_CHANGES = 2_000
# Busy times kept before a diary starts again (about 200 bytes each: 40 MB).
MOST_KEPT = 200_000
# Set-ups kept at most (a clinic's, each protocol's steps, each grid's backdrop).
MOST_SETUPS = 500


class Busy(NamedTuple):
    """A time something is held (a visit, time off, a closure), with what says why."""

    # A tuple, not a dataclass: a plan search makes thousands of them a second.
    start: datetime
    end: datetime
    label: str = ""


def days_touched(start: datetime, end: datetime) -> range:
    """The day numbers that [start, end) touches.

    By the dates' ordinals (a search asks thousands of times; dividing
    timedeltas cost four times as much).
    """
    if start.tzinfo is not UTC:
        start = start.astimezone(UTC)
    if end.tzinfo is not UTC:
        end = end.astimezone(UTC)
    at_midnight = not (end.hour or end.minute or end.second or end.microsecond)
    return range(
        start.toordinal() - DAY_ZERO_ORDINAL, end.toordinal() - DAY_ZERO_ORDINAL + (not at_midnight)
    )


def day_span(days: range) -> tuple[datetime, datetime]:
    """The instants the days numbered ``days`` begin and end."""
    return DAY_ZERO + days.start * DAY, DAY_ZERO + days.stop * DAY


def sql_in(column: str, values) -> tuple[str, list]:
    """``column IN (...)`` for ``values`` (never empty), as SQL and its parameters."""
    values = list(values)
    return f"{column} IN ({', '.join(['%s'] * len(values))})", values


def busy_rows(table: type, columns: str, conditions, start, end) -> list[tuple]:
    """(start, end, *columns) of ``table``'s rows (as ``t``) overlapping [start, end)
    and meeting every one of ``conditions``, each (SQL, parameters).

    Written as SQL, not built with the ORM: a plan search loads busy times
    a dozen or more times, and building and compiling a query cost more than
    running it (about a millisecond each). The lower bound on start is
    ``scheduler.models.overlapping``'s: nothing lasts longer than
    LONGEST_VISIT, so an index on start bounds the scan on both sides.

    Times are read as UTC text, offset included, and parsed here with
    ``datetime.fromisoformat`` (one C call, and eight times faster than parsing
    without the offset and ``replace(tzinfo=UTC)`` after). Django's SQLite
    converters turn each one into a datetime twice over, and on PostgreSQL
    Django registers a time-zone loader built on psycopg's pure-Python parser
    (a regular expression a value): either was most of the cost of loading a
    busy diary.
    """
    db = connections[router.db_for_read(table)]
    adapt = db.ops.adapt_datetimefield_value
    begins, ends = (f"t.{db.ops.quote_name(name)}" for name in ("start", "end"))
    as_utc_text = (
        "CAST({} AS text) || '+00:00'"
        if db.vendor == "sqlite"
        else "CAST(({} AT TIME ZONE 'UTC') AS text) || '+00:00'"
    )
    times = f"{as_utc_text.format(begins)}, {as_utc_text.format(ends)}"
    conditions = [
        *conditions,
        (
            f"{begins} < %s AND {ends} > %s AND {begins} >= %s",
            [adapt(end), adapt(start), adapt(start - LONGEST_VISIT)],
        ),
    ]
    sql = (
        f"SELECT {times}, {columns} FROM {db.ops.quote_name(table._meta.db_table)} t WHERE "
        + " AND ".join(f"({sql})" for sql, _ in conditions)
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [value for _, values in conditions for value in values])
        rows = cursor.fetchall()
    parse = datetime.fromisoformat
    return [(parse(a), parse(b), *rest) for a, b, *rest in rows]


def not_among(visit_column: str, visit_ids) -> list[tuple[str, list]]:
    """The condition leaving out ``visit_ids`` (visits being moved), if any."""
    if not visit_ids:
        return []
    sql, ids = sql_in(visit_column, visit_ids)
    return [(f"NOT {sql}", ids)]


# Each kind of row: (start, end, row id, resource id, visit id, ...).
PARTICIPATIONS = "participations"  # of clinicians: each holds a person for their part
ROOM_VISITS = "room visits"  # of rooms: (..., status): cancelled ones are left out by readers


def participation_rows(condition, start, end, leave_out=()) -> list[tuple]:
    """(start, end, participant id, clinician id, visit id) of participations that hold time."""
    return busy_rows(
        VisitParticipant,
        "t.id, t.clinician_id, t.visit_id",
        [("t.holds_time", []), condition, *not_among("t.visit_id", leave_out)],
        start,
        end,
    )


def room_visit_rows(condition, start, end, leave_out=()) -> list[tuple]:
    """(start, end, visit id, room id, visit id, status) of visits in rooms, any status.

    Status is checked by the reader, not in SQL: given a status, SQLite walks
    its (status, start) index over every room's visits instead of (room, start).
    """
    return busy_rows(
        Visit,
        "t.id, t.room_id, t.id, t.status",
        [condition, ("t.room_id IS NOT NULL", []), *not_among("t.id", leave_out)],
        start,
        end,
    )


READERS = {
    PARTICIPATIONS: (participation_rows, "t.clinician_id", "t.visit_id"),
    ROOM_VISITS: (room_visit_rows, "t.room_id", "t.id"),
}


def read_rows(kind: str, resource_ids, start, end, leave_out=()) -> list[tuple]:
    """Rows of ``kind`` holding ``resource_ids`` in [start, end), from the database."""
    if not resource_ids:
        return []
    read, resource_column, _ = READERS[kind]
    return read(sql_in(resource_column, resource_ids), start, end, leave_out)


def holds(kind: str, row: tuple) -> bool:
    """Whether a row of ``kind`` holds its person or room (participations are read
    only when they do; a visit in a room, unless cancelled or the like)."""
    return kind == PARTICIPATIONS or (row[3] is not None and row[5] in BLOCKING_STATUSES)


def busy_by_resource(kind: str, rows) -> dict[int, list[Busy]]:
    """The busy times in ``rows`` of ``kind``, by person or room."""
    busy = defaultdict(list)
    for row in rows:
        if holds(kind, row):
            busy[row[3]].append(Busy(row[0], row[1]))
    return busy


class Diary:
    """Busy times of both kinds, by (kind, person or room id, day number), as read so far.

    A day's list holds every time touching that day (a visit over midnight is
    in two), in time order.
    """

    def __init__(self, using: str):
        self.using = using
        self.lock = threading.Lock()
        self.days: dict[tuple[str, int, int], list[Busy]] = {}
        self.visits_on: dict[tuple[str, int, int], list[int]] = {}  # each busy time's visit
        self.kept_in: dict[int, set[tuple[str, int, int]]] = defaultdict(set)  # by visit id
        self.kept = 0
        self.position: int | None = None  # in the change log; see refresh
        self.used_at = monotonic()
        self.setups: dict = {}  # see setup
        self.applied: set[int] = set()  # PostgreSQL: log rows read since the position

    def setup(self, key, covers, read):
        """What ``read()`` returns (a clinic's set-up, say), kept under ``key`` until the
        set-up changes, and read again when ``covers(kept)`` says it does not do."""
        with self.lock:
            kept = self.setups.get(key)
            if kept is None or not covers(kept):
                if len(self.setups) >= MOST_SETUPS:
                    self.setups.clear()  # desk pages of many days: keep the recent ones
                kept = self.setups[key] = read()
            return kept

    def busy(self, kind: str, resource_ids, days: range) -> list[tuple[int, int, list[Busy]]]:
        """(id, day, busy times) of ``kind`` for ``resource_ids`` on each of ``days`` that has
        any: read from the database where not yet kept (one query for all that is
        missing), else from memory.

        The lists are the diary's own: readers copy, never change them.
        """
        with self.lock:
            found, missing = self._busy_kept(kind, resource_ids, days)
            if missing:
                wanted = {resource for _, resource, _ in missing}
                self._keep(kind, read_rows(kind, wanted, *day_span(days)), missing)
                found, _ = self._busy_kept(kind, resource_ids, days)
            return found

    def _busy_kept(self, kind, resource_ids, days) -> tuple[list[tuple], set[tuple]]:
        """(busy, missing): ``busy``'s answer from what is kept, and the keys not kept.

        One look-up a key: a plan search copies a thousand and more a plan."""
        kept, found, missing = self.days, [], set()
        for resource in resource_ids:
            for day in days:
                busy = kept.get(key := (kind, resource, day))
                if busy is None:
                    missing.add(key)
                elif busy:
                    found.append((resource, day, busy))
        return found, missing

    def _keep(self, kind: str, rows: list[tuple], into) -> None:
        """Put the busy times of ``rows`` into the days of ``into``, which are kept from now.

        Each day gets a new list: plans in other threads may still be reading
        the one they were given.
        """
        busy, visits = defaultdict(list), defaultdict(list)
        for row in rows:
            if not holds(kind, row):
                continue
            for day in days_touched(row[0], row[1]):
                key = (kind, row[3], day)
                if key in into:
                    busy[key].append(Busy(row[0], row[1]))
                    visits[key].append(row[4])
                    self.kept_in[row[4]].add(key)
        for key in into:
            # In time order: a timeline made of several days sorts their runs by merging.
            pairs = sorted(
                zip(
                    self.days.get(key, []) + busy[key],
                    self.visits_on.get(key, []) + visits[key],
                    strict=True,
                )
            )
            self.days[key] = [held for held, _ in pairs]
            self.visits_on[key] = [visit for _, visit in pairs]
            self.kept += len(busy[key])

    def refresh(self) -> bool:
        """Catch up with the change log; False when this diary must be dropped instead."""
        with self.lock:
            if monotonic() - self.used_at > IDLE_SECONDS or self.kept > MOST_KEPT:
                return False
            self.used_at = monotonic()
            position, changed = self._changes()
            if len(changed) > MOST_CHANGES:
                return False
            if None in changed:  # a set-up table was written
                self.setups.clear()
                changed.discard(None)
            if changed and self.days:
                self._read_again(changed)
            self.position = position
            return True

    def _changes(self) -> tuple[int, set[int]]:
        """(the log's new position, the visits changed since the last).

        SQLite writes one transaction at a time, so rows are numbered in
        commit order: what this diary has not seen is numbered after its
        position. PostgreSQL numbers rows when they are written, and commits
        in another order; there the position is the oldest transaction still
        running when the log was last read (the snapshot's xmin, over the
        whole server: another database's long transaction holds it back too),
        rows written by it or later are read again, and those already applied
        are known by their numbers (``applied``), so a long transaction
        elsewhere costs a longer list, not reading visits again.
        """
        db = connections[self.using]
        log = db.ops.quote_name(DiaryChange._meta.db_table)
        with db.cursor() as cursor:
            if db.vendor == "postgresql":
                cursor.execute(
                    "SELECT x.horizon, t.id, t.visit_id, t.transaction FROM "
                    "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) x "
                    f"LEFT JOIN {log} t ON t.transaction >= COALESCE(%s, x.horizon)",
                    [self.position],
                )
                rows = cursor.fetchall()
                position = rows[0][0]
                seen = [row[1:] for row in rows if row[1] is not None]
                # On the first read, what is visible is in whatever is read after it.
                changed = (
                    set()
                    if self.position is None
                    else {visit for pk, visit, _ in seen if pk not in self.applied}
                )
                # Only rows the next read returns again need remembering.
                self.applied = {pk for pk, _, transaction in seen if transaction >= position}
                return position, changed
            if self.position is None:
                cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {log}")
                return cursor.fetchone()[0], set()
            cursor.execute(f"SELECT id, visit_id FROM {log} WHERE id > %s", [self.position])
            rows = cursor.fetchall()
        return max((row[0] for row in rows), default=self.position), {row[1] for row in rows}

    def _read_again(self, visit_ids: set[int]) -> None:
        for visit in visit_ids:
            for key in self.kept_in.pop(visit, ()):
                kept = list(zip(self.days[key], self.visits_on[key], strict=True))
                left = [(busy, other) for busy, other in kept if other != visit]
                self.days[key] = [busy for busy, _ in left]
                self.visits_on[key] = [other for _, other in left]
                self.kept -= len(kept) - len(left)
        for kind, (read, _, visit_column) in READERS.items():
            rows = read(sql_in(visit_column, visit_ids), *EVER)
            # Only into days already kept: the others are read when asked for.
            touched = {(kind, row[3], day) for row in rows for day in days_touched(row[0], row[1])}
            self._keep(kind, rows, {key for key in touched if key in self.days})


_diaries: dict[tuple[str, str], Diary] = {}
_diaries_lock = threading.Lock()


def current_diary(using: str = DEFAULT_DB_ALIAS) -> Diary | None:
    """This process's diary of database ``using``, up to date; None inside a transaction."""
    db = connections[using]
    if db.in_atomic_block:
        return None
    key = (using, str(db.settings_dict["NAME"]))
    with _diaries_lock:
        diary = _diaries.get(key)
        if diary is None or not diary.refresh():
            diary = _diaries[key] = Diary(using)
            diary.refresh()
    return diary


def forget_diaries() -> None:
    """Drop every diary this process keeps: the next plan reads afresh (benchmarks
    measure that first plan)."""
    with _diaries_lock:
        _diaries.clear()


def forget_old_changes() -> int:
    """Scheduled: delete change-log rows older than any diary can still need (by the
    database's clock, which stamped them)."""
    deleted, _ = DiaryChange.objects.filter(
        at__lt=ExpressionWrapper(Now() - CHANGES_KEPT, output_field=DateTimeField())
    ).delete()
    return deleted


ensure_schedule = every(60, "Forget old diary changes", "scheduler.diary.forget_old_changes")
