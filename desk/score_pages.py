"""Questionnaire scores for the team: the clinic's table, and a clinician's page for their patient.

Who sees what is ``questionnaires.scores``' rule: clinic admins every
patient's, a clinician their own patients', the front desk nobody's (the
desk's patient page tells them whose they are). Each page reads a fixed number
of queries whatever the number of patients and answers
(tests/test_score_pages.py), and leaves a row in the audit trail.
"""

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from desk.score_chart import charts_of
from questionnaires.models import Instrument
from questionnaires.scores import (
    Course,
    completed_scores,
    courses,
    courses_for,
    own_patients,
    patients_whose_scores,
    sees_every_patients_scores,
)
from scheduler import audit
from scheduler.models import AuditAction, Patient, Visit
from scheduler.roles import Role, access_of, role_required, roles_of


@dataclass(frozen=True)
class Row:
    patient: Patient
    url: str
    course: Course


def _patient_url(user, patient: Patient) -> str:
    # Admins open the desk's page (plans, visits, scores); a clinician their own.
    if sees_every_patients_scores(user):
        return reverse("desk_patient", args=[patient.pk])
    return reverse("my_patient", args=[patient.pk])


def score_rows(user, instrument: str = "") -> list[Row]:
    """The latest score of each patient ``user`` may see, per instrument (or only
    ``instrument``'s code), worst first. One query."""
    responses = (
        completed_scores().select_related("patient").filter(patient__in=patients_whose_scores(user))
    )
    if instrument:
        responses = responses.filter(instrument__code=instrument)
    by_patient: dict[int, list] = {}
    for response in responses:
        by_patient.setdefault(response.patient_id, []).append(response)
    rows = [
        Row(answers[0].patient, _patient_url(user, answers[0].patient), course)
        for answers in by_patient.values()
        for course in courses(answers)
    ]
    # Worst first: the highest latest total; of equal ones, the least improved.
    rows.sort(key=lambda row: (row.course.code, -row.course.latest.total, -row.course.change))
    return rows


@require_safe
@role_required(Role.ADMIN, Role.CLINICIAN)
def scores(request: HttpRequest) -> HttpResponse:
    instruments = {}
    for code, short_name in Instrument.objects.order_by("code", "-pk").values_list(
        "code", "short_name"
    ):
        instruments.setdefault(code, short_name)
    chosen = request.GET.get("instrument", "")
    if chosen not in instruments:
        chosen = ""
    rows = score_rows(request.user, chosen)
    roles = roles_of(request.user)
    context = {
        "clinic": access_of(request.user).clinic,
        "rows": rows,
        "instruments": instruments,
        "chosen": chosen,
        "all_patients": Role.ADMIN in roles,
        "is_clinician": Role.CLINICIAN in roles,
    }
    audit.record(
        request,
        AuditAction.LISTED_PATIENTS,
        None,
        f"questionnaire scores: {len(rows)} rows" + (f", {chosen}" if chosen else ""),
    )
    return render(request, "desk/scores.html", context)


@require_safe
@role_required(Role.CLINICIAN)
def my_patient(request: HttpRequest, pk: int) -> HttpResponse:
    """A clinician's own patient: their visits with this clinician and their scores.

    Anyone else's patient is a 404, as the admin answers a clinician for a row
    they may not see.
    """
    clinician = request.user.clinician
    patient = get_object_or_404(own_patients(clinician).select_related("clinic"), pk=pk)
    visits = list(
        Visit.objects.for_patient(patient)
        .scheduled()
        .select_related("visit_type", "room")
        .order_by("start", "pk")
    )
    mine = set(
        Visit.objects.for_clinician(clinician).filter(patient=patient).values_list("pk", flat=True)
    )
    tz = patient.clinic.tz
    context = {
        "clinic": patient.clinic,
        "tz": tz,
        "patient": patient,
        "visits": [visit for visit in visits if visit.pk in mine],
        "scores_visible": True,
        "score_charts": charts_of(courses_for(patient), visits, tz),
    }
    audit.record(
        request, AuditAction.VIEWED_PATIENT, patient, "questionnaire scores (clinician's page)"
    )
    return render(request, "desk/my_patient.html", context)
