"""The Spravato REMS's follow-up: a Patient Monitoring Form task for every completed session.

``open_monitoring_form_task`` receives ``scheduler.booking.visit_saved`` (see
PlansConfig.ready), inside the transaction that completed the visit: the task
commits or rolls back with it. The rules are in docs/rules.md, section 5.
"""

from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from plans.models import MonitoringFormTask, is_spravato
from scheduler.booking import VisitChange
from scheduler.models import Clinic, Visit


def open_monitoring_form_task(sender, visit: Visit, change: VisitChange, **kwargs) -> None:
    """One task per completed Spravato session, due 7 calendar days after its local date."""
    if change != VisitChange.COMPLETED or not is_spravato(visit.visit_type):
        return
    MonitoringFormTask.objects.get_or_create(
        visit=visit, defaults={"due_on": MonitoringFormTask.due_for(visit)}
    )


def record_submission(task: MonitoringFormTask, submitted_on: date, by: AbstractBaseUser) -> bool:
    """Close ``task``: the form went in on ``submitted_on``. False if it was closed already.

    A conditional update, so two people recording it at once close it once.
    """
    session_day = task.visit.start.astimezone(task.visit.clinic.tz).date()
    today = timezone.localdate(timezone=task.visit.clinic.tz)
    if submitted_on < session_day:
        raise ValidationError(
            f"The form cannot go in before the session ({session_day:%a %Y-%m-%d})."
        )
    if submitted_on > today:
        raise ValidationError("The submission date cannot be in the future.")
    with transaction.atomic():
        closed = MonitoringFormTask.objects.filter(pk=task.pk, submitted_on__isnull=True).update(
            submitted_on=submitted_on, submitted_by=by, recorded_at=timezone.now()
        )
    task.refresh_from_db()
    return bool(closed)


def open_tasks(clinic: Clinic) -> list[MonitoringFormTask]:
    """The clinic's open monitoring-form tasks, soonest due first; one query.

    Each carries ``left``, its days left (negative once overdue), and ``overdue_days``, counted from the clinic's today.
    """
    today = timezone.localdate(timezone=clinic.tz)
    tasks = list(
        MonitoringFormTask.objects.open()
        .for_clinic(clinic)
        .select_related("visit__patient", "visit__visit_type")
        # What the list shows: the desk's cached schedule is told apart from a
        # fresh one by whether the visits' other columns were read (tests).
        .only(
            "due_on",
            "submitted_on",
            "visit__start",
            "visit__patient__first_name",
            "visit__patient__last_name",
            "visit__visit_type__name",
        )
        .order_by("due_on", "pk")
    )
    for task in tasks:
        task.left = task.days_left(today)
        task.overdue_days = max(0, -task.left)
    return tasks
