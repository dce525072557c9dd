"""The demo clinic's reminder policies (the cadence in docs/rules.md), created idempotently."""

from datetime import timedelta

from django.utils import timezone

from notifications.models import Purpose, ReminderPolicy, ReminderRule, Timing
from notifications.planning import plan_upcoming
from scheduler.models import BLOCKING_STATUSES, Clinic, Visit, VisitKind, VisitType

H = timedelta(hours=1)
BOTH, SMS_ONLY, EMAIL_ONLY = (True, True), (True, False), (False, True)


def default_rules(visit_type: VisitType) -> list[tuple[str, timedelta, str, tuple[bool, bool]]]:
    """(purpose, offset, timing, (by SMS, by email)) for a visit type, by its kind and modality.

    Everyone: 72 h and 24 h before. In person: 2 h before, by text. Telehealth:
    the video link 1 h before instead (two texts within an hour would hit the
    daily limit anyway). Dosing: preparation instructions 48 h before and
    aftercare right after, by email (long, private; the day's text went with
    the 2 h reminder). Maintenance check-ins are a month apart: a week's notice
    replaces the 72 h one, so there is time to move it.
    """
    before = Timing.BEFORE_START
    first = (
        (Purpose.REMINDER, 168 * H, before, BOTH)
        if visit_type.kind == VisitKind.MAINTENANCE
        else (Purpose.REMINDER, 72 * H, before, BOTH)
    )
    rules = [first, (Purpose.REMINDER, 24 * H, before, BOTH)]
    if visit_type.is_telehealth:
        rules.append((Purpose.VIDEO_LINK, 1 * H, before, BOTH))
    else:
        rules.append((Purpose.REMINDER, 2 * H, before, SMS_ONLY))
    if visit_type.is_dosing:
        rules.append((Purpose.PREPARATION, 48 * H, before, BOTH))
        rules.append((Purpose.AFTERCARE, timedelta(0), Timing.AFTER_END, EMAIL_ONLY))
    return rules


def seed_reminder_policies(clinic: Clinic) -> list[ReminderPolicy]:
    """A policy per visit type with the default rules; visits already booked get their messages."""
    policies, new_rules = [], []
    for visit_type in VisitType.objects.filter(clinic=clinic):
        policy, _ = ReminderPolicy.objects.get_or_create(visit_type=visit_type)
        # The policy's rules in one read; missing ones written together below.
        have = {(r.purpose, r.timing, r.offset): r for r in policy.rules.all()}
        for purpose, offset, timing, (by_sms, by_email) in default_rules(visit_type):
            rule = have.get((purpose, timing, offset))
            wanted = {"by_sms": by_sms, "by_email": by_email, "is_active": True}
            if rule is None:
                rule = ReminderRule(
                    policy=policy, purpose=purpose, timing=timing, offset=offset, **wanted
                )
                new_rules.append(rule)
            elif any(getattr(rule, name) != value for name, value in wanted.items()):
                for name, value in wanted.items():
                    setattr(rule, name, value)
                rule.save(update_fields=list(wanted))
            # Unique by the read above; the fields' own rules still hold.
            rule.full_clean(validate_unique=False, validate_constraints=False)
        policies.append(policy)
    ReminderRule.objects.bulk_create(new_rules)
    # The demo's own bookings were made before their policies existed.
    plan_upcoming(
        Visit.objects.filter(
            patient__clinic=clinic, status__in=BLOCKING_STATUSES, start__gt=timezone.now()
        ).select_related("patient__clinic", "visit_type")
    )
    return policies


def seed(clinic: Clinic) -> list[ReminderPolicy]:
    """Seed the reminders layer of the demo clinic."""
    return seed_reminder_policies(clinic)
