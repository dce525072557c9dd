"""Alerts nobody acknowledged in time go to the clinic's clinical lead.

"In time" is ``SafetyPolicy.escalate_after_minutes`` (default 60) counted in
the clinic's opening minutes: its weekly opening hours, less its closures and
public holidays (as the booking rules read them, ``scheduler.availability``).
An alert raised at 21:00, after closing, escalates that many minutes after the
next opening; one raised at 17:30 when the clinic closes at 18:00 has 30
minutes left the next morning. A clinic that never opens in the next
``LOOKAHEAD`` (no opening hours set, a long closure) counts plain minutes
instead: an alert must never wait for an opening that does not come.

``escalate_due`` runs every minute on the worker (``SCHEDULE_NAME``). Each
alert is claimed by a conditional update (``escalated_at`` still empty, still
unacknowledged), so two workers, or two passes, escalate it once: the lead's
text and email are planned in the claiming transaction. Without a clinical
lead nothing is claimed; the desk shows that with the alert, and the next pass
after a lead is set escalates it.
"""

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from notifications.models import Purpose
from questionnaires.models import SafetyAlert, SafetyPolicy
from questionnaires.safety import notify, policy_for
from scheduler.availability import closed_times
from scheduler.models import Clinic
from scheduler.periodic import every

SCHEDULE_NAME = "safety alert escalation"
TASK = "questionnaires.escalation.escalate_due"
LOOKAHEAD = timedelta(days=31)


class OpeningClock:
    """A clinic's opening hours as a clock that only runs while the clinic is open."""

    def __init__(self, clinic: Clinic, start: datetime, end: datetime):
        """Reads the weekly hours and the closures and holidays of [start, end): two queries."""
        self.tz = clinic.tz
        self.start, self.end = start, end
        self.weekly: dict[int, list[tuple[time, time]]] = defaultdict(list)
        for weekday, opens, closes in clinic.opening_hours.values_list(
            "weekday", "opens", "closes"
        ).order_by("opens"):
            self.weekly[weekday].append((opens, closes))
        closures, holidays = closed_times(clinic, start, end)
        self.closed = [*closures.intervals, *holidays.intervals]

    def open_spans(self):
        """The clinic's open stretches from ``start`` to ``end``, in order, as UTC pairs."""
        day = self.start.astimezone(self.tz).date()
        last = self.end.astimezone(self.tz).date()
        while day <= last:
            for opens, closes in self.weekly.get(day.weekday(), ()):
                span_start = datetime.combine(day, opens, tzinfo=self.tz).astimezone(UTC)
                span_end = datetime.combine(day, closes, tzinfo=self.tz).astimezone(UTC)
                yield from self._less_closures(max(span_start, self.start), min(span_end, self.end))
            day += timedelta(days=1)

    def _less_closures(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        pieces = [(start, end)] if start < end else []
        for closed in self.closed:
            left = []
            for piece_start, piece_end in pieces:
                if closed.end <= piece_start or piece_end <= closed.start:
                    left.append((piece_start, piece_end))
                    continue
                if piece_start < closed.start:
                    left.append((piece_start, closed.start))
                if closed.end < piece_end:
                    left.append((closed.end, piece_end))
            pieces = left
        return sorted(pieces)

    def after(self, minutes: int) -> datetime:
        """The moment ``minutes`` opening minutes after ``start`` have passed; plain minutes
        if the clinic does not open that long before ``end``."""
        left = timedelta(minutes=minutes)
        for span_start, span_end in self.open_spans():
            if span_end - span_start >= left:
                return span_start + left
            left -= span_end - span_start
        return self.start + timedelta(minutes=minutes)


def escalates_at(alert: SafetyAlert, policy: SafetyPolicy, clinic: Clinic) -> datetime:
    """When ``alert``, if still unacknowledged, goes to the clinical lead."""
    clock = OpeningClock(clinic, alert.created_at, alert.created_at + LOOKAHEAD)
    return clock.after(policy.escalate_after_minutes)


def escalate_due(now: datetime | None = None) -> dict[str, int]:
    """The worker's task: escalate every alert whose time has come; counts."""
    now = now or timezone.now()
    counts = {"escalated": 0, "no_clinical_lead": 0}
    waiting = (
        SafetyAlert.objects.unacknowledged()
        .filter(escalated_at__isnull=True)
        .select_related("patient__clinic", "response__request")
    )
    policies: dict[int, SafetyPolicy] = {}
    for alert in waiting:
        clinic = alert.patient.clinic
        if clinic.pk not in policies:
            policies[clinic.pk] = policy_for(clinic)
        policy = policies[clinic.pk]
        if escalates_at(alert, policy, clinic) > now:
            continue
        lead = policy.clinical_lead
        if lead is None or not lead.is_active:
            counts["no_clinical_lead"] += 1
            continue
        if escalate(alert, policy, now):
            counts["escalated"] += 1
    return counts


def escalate(alert: SafetyAlert, policy: SafetyPolicy, now: datetime) -> bool:
    """Claim ``alert`` for escalation and plan the lead's text and email; whether this call did."""
    with transaction.atomic():
        claimed = SafetyAlert.objects.filter(
            pk=alert.pk, escalated_at__isnull=True, acknowledged_at__isnull=True
        ).update(escalated_at=now)
        if not claimed:
            return False  # acknowledged meanwhile, or another worker escalated it
        alert.escalated_at = now
        notify(alert, [policy.clinical_lead], Purpose.SAFETY_ESCALATION, now)
    return True


ensure_schedule = every(1, SCHEDULE_NAME, TASK)
