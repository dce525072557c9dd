"""A patient's scores over time, and who may see them.

A *course* is one instrument's completed responses of one patient, oldest
first: the first is the baseline, each later one is compared with it, and the
latest says whether the patient responds (a drop of at least the instrument's
``response_drop`` from baseline) or is in remission (below its
``remission_below``). Everything comes from the instrument's scoring data, so
an instrument a clinic adds is read the same way as PHQ-9 and GAD-7.

Who sees answers and scores: clinic admins (of the clinic they work in, or a
superuser) every patient's seen at that clinic (``Patient.objects.seen_at``); a clinician the patients they are on a visit with
(leading or not; proposed visits of a plan under review do not count); the
front desk nobody's. The pages, the table and the admin all ask here.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from questionnaires.models import Instrument, QuestionnaireResponse
from questionnaires.scoring import is_remission, is_response
from scheduler.models import Patient, Visit
from scheduler.roles import Role, access_of, roles_of


@dataclass(frozen=True)
class Point:
    response_id: int
    at: datetime
    total: int
    band: str
    change: int  # from the baseline; lower totals are better on these instruments


@dataclass(frozen=True)
class Band:
    low: int
    high: int
    label: str


@dataclass(frozen=True)
class Course:
    code: str
    short_name: str
    title: str
    max_total: int
    bands: tuple[Band, ...]
    points: tuple[Point, ...]
    response_drop: float
    remission_below: int | None
    response: bool
    remission: bool

    @property
    def baseline(self) -> Point:
        return self.points[0]

    @property
    def latest(self) -> Point:
        return self.points[-1]

    @property
    def change(self) -> int:
        return self.latest.total - self.baseline.total

    @property
    def change_percent(self) -> int | None:
        """The latest change as a percentage of the baseline (None when the baseline is 0)."""
        if self.baseline.total == 0:
            return None
        return round(100 * self.change / self.baseline.total)

    @property
    def response_at_most(self) -> int | None:
        """The highest total that counts as a response (None when the baseline is 0)."""
        if self.baseline.total == 0:
            return None
        # is_response: baseline - latest >= drop * baseline
        return int(self.baseline.total * (1 - self.response_drop))

    @property
    def outcome(self) -> str:
        """In words, for the table and the chart's caption."""
        if len(self.points) < 2:
            return "baseline only"
        if self.remission:
            return "remission"
        if self.response:
            return "response"
        return "neither response nor remission"


def course_of(instrument: Instrument, responses: list[QuestionnaireResponse]) -> Course:
    """One instrument's course from its completed responses, oldest first.

    ``instrument`` gives the bands and thresholds: the newest version answered,
    so a clinic's corrected bands apply to the picture while each response
    keeps the band it was scored with when it was submitted.
    """
    scoring = instrument.scoring
    baseline = responses[0].total
    points = tuple(
        Point(r.pk, r.completed_at, r.total, r.band, r.total - baseline) for r in responses
    )
    latest = points[-1].total
    return Course(
        code=instrument.code,
        short_name=instrument.short_name,
        title=instrument.title,
        max_total=scoring["total"]["max"],
        bands=tuple(
            Band(band["min"], band["max"], band["label"])
            for band in sorted(scoring["bands"], key=lambda band: band["min"])
        ),
        points=points,
        response_drop=scoring.get("response_drop", 0.5),
        remission_below=scoring.get("remission_below"),
        response=len(points) > 1 and is_response(scoring, baseline, latest),
        remission=len(points) > 1 and is_remission(scoring, latest),
    )


def completed_scores() -> QuerySet:
    """Completed, scored responses with their instrument, oldest first (one query)."""
    return (
        QuestionnaireResponse.objects.completed()
        .filter(total__isnull=False)
        .select_related("instrument")
        .order_by("completed_at", "pk")
    )


def courses(responses: Iterable[QuestionnaireResponse]) -> list[Course]:
    """One course per instrument code among ``responses`` (one patient's, oldest first),
    in the order of the codes."""
    by_code: dict[str, list[QuestionnaireResponse]] = {}
    newest: dict[str, Instrument] = {}
    for response in responses:
        code = response.instrument.code
        by_code.setdefault(code, []).append(response)
        newest[code] = response.instrument
    return [course_of(newest[code], by_code[code]) for code in sorted(by_code)]


def courses_for(patient: Patient) -> list[Course]:
    return courses(completed_scores().filter(patient=patient))


def sees_every_patients_scores(user) -> bool:
    return Role.ADMIN in roles_of(user)


def own_patients(clinician) -> QuerySet:
    """The patients ``clinician`` is on a visit with (booked or after; not proposals)."""
    return Patient.objects.filter(
        pk__in=Visit.objects.for_clinician(clinician).scheduled().values("patient")
    )


def patients_whose_scores(user) -> QuerySet:
    """The patients whose answers and scores ``user`` may see (the module's rule)."""
    if sees_every_patients_scores(user):
        return Patient.objects.seen_at(access_of(user).clinic)
    if Role.CLINICIAN in roles_of(user):
        return own_patients(user.clinician)
    return Patient.objects.none()


def may_see_scores(user, patient: Patient) -> bool:
    if sees_every_patients_scores(user):
        return True  # the page showing ``patient`` is scoped to the admin's clinic
    if Role.CLINICIAN not in roles_of(user):
        return False
    return Visit.objects.for_clinician(user.clinician).scheduled().filter(patient=patient).exists()
