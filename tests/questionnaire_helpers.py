"""A clinic whose visits are asked questionnaires by the default rules (questionnaires migration
0002: PHQ-9 and GAD-7 at screening, before the first dose and every other one, at each
maintenance check-in), and ways to read what was asked."""

from datetime import timedelta

from questionnaires.models import QuestionnaireRequest, RequestStatus
from scheduler.models import Modality, Visit, VisitKind
from tests.conftest import MONDAY, at
from tests.reminder_helpers import ReminderClinic

# Doses of a series: Monday, Wednesday and Friday at 10:00, two weeks running (New York).
DOSE_DAYS = [MONDAY + timedelta(days=d) for d in (0, 2, 4, 7, 9, 11)]


class AskingClinic(ReminderClinic):
    """ReminderClinic with a maintenance check-in visit type."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_in = self.visit_type(
            "check-in", VisitKind.MAINTENANCE, 30, "prescriber", Modality.TELEHEALTH
        )

    def doses(self, patient, count: int, hh_mm: str = "10:00") -> list[Visit]:
        return [self.book(patient, self.iv, at(day, hh_mm)) for day in DOSE_DAYS[:count]]


def asked(visit: Visit, status: str = RequestStatus.OPEN) -> list[str]:
    """The instrument codes asked before ``visit`` (open requests by default), sorted."""
    return sorted(
        QuestionnaireRequest.objects.filter(visit=visit, status=status).values_list(
            "instrument__code", flat=True
        )
    )


BOTH = ["gad-7", "phq-9"]
