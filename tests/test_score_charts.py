"""A patient's scores over time: bands, doses, baseline, response and remission, in a picture and in words."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from desk.score_chart import chart_of, dosing_visits
from questionnaires.scores import courses_for
from scheduler.models import AuditAction, AuditEvent, StaffRole, Visit, VisitStatus
from tests.conftest import MONDAY, at
from tests.page_helpers import clinic_admin, front_desk, sign_in_verified
from tests.score_helpers import answered


@pytest.fixture
def course(clinic):
    """Three IV doses a week apart; PHQ-9 18 before the first, 11 before the third, 7 after;
    GAD-7 12 then 9."""
    patient = clinic.patient("Avery", "Applewood")
    doses = clinic.doses_one_after_another([patient], at(MONDAY, "09:00"))
    for week in (1, 2):
        doses += Visit.objects.bulk_create(
            [
                Visit(
                    patient=patient,
                    visit_type=clinic.iv,
                    clinician=clinic.prescriber,
                    room=clinic.room1,
                    start=doses[0].start + timedelta(weeks=week),
                    end=doses[0].end + timedelta(weeks=week),
                    status=VisitStatus.COMPLETED,
                )
            ]
        )
    answered(patient, "phq-9", 18, doses[0].start - timedelta(days=1))
    answered(patient, "phq-9", 11, doses[2].start - timedelta(days=1))
    answered(patient, "phq-9", 7, doses[2].start + timedelta(days=6))
    answered(patient, "gad-7", 12, doses[0].start - timedelta(days=1))
    answered(patient, "gad-7", 9, doses[2].start + timedelta(days=6))
    return patient, doses


def _section(page: str) -> str:
    return page.split('id="scores"', 1)[1].split("</section>", 1)[0]


def test_a_course_reads_baseline_change_response_and_remission_from_the_instruments_data(
    course,
):
    patient, _ = course
    gad, phq = courses_for(patient)
    assert (phq.code, [p.total for p in phq.points]) == ("phq-9", [18, 11, 7])
    assert [p.change for p in phq.points] == [0, -7, -11]
    assert (phq.change_percent, phq.response, phq.remission) == (-61, True, False)
    assert phq.response_at_most == 9 and phq.remission_below == 5
    assert [b.label for b in phq.bands][-1] == "Severe"
    # GAD-7 has no remission threshold in its scoring; 12 -> 9 is not half.
    assert (gad.response, gad.remission, gad.remission_below) == (False, False, None)


def test_a_chart_shades_every_band_marks_each_dose_and_says_the_outcome_in_words(clinic, course):
    patient, doses = course
    phq = courses_for(patient)[1]
    chart = chart_of(phq, dosing_visits(doses), clinic.clinic.tz)
    assert [b.label for b in chart.bands] == [
        "Minimal",
        "Mild",
        "Moderate",
        "Moderately severe",
        "Severe",
    ]
    # Bands stack without gaps from the axis (0) to the top (27); higher totals higher up.
    assert chart.bands[0].y + chart.bands[0].height == chart.plot_bottom
    for lower, upper in zip(chart.bands, chart.bands[1:], strict=False):
        assert upper.y + upper.height == lower.y
    assert chart.bands[-1].y == chart.plot_top
    assert len(chart.doses) == 3
    xs = [dot.x for dot in chart.dots]
    assert xs == sorted(xs) and chart.dots[0].y < chart.dots[-1].y  # a lower score sits lower
    # The first dose is a day after the baseline: its line is right of the first score.
    assert xs[0] < chart.doses[0].x < xs[1]
    assert [level.kind for level in chart.levels] == ["baseline", "response", "remission"]
    assert "Response (a drop of at least 50 % from baseline): yes." in chart.summary
    assert "Remission (below 5): no." in chart.summary
    assert "baseline 18 (Moderately severe)" in chart.summary
    assert "11 points lower (-61 %)" in chart.summary
    assert chart.summary.endswith("Doses marked: 3 Jun 2030, 10 Jun 2030, 17 Jun 2030.")


def test_a_cancelled_or_proposed_dose_is_not_marked(clinic, course):
    patient, doses = course
    Visit.objects.filter(pk=doses[1].pk).update(status=VisitStatus.CANCELLED)
    visits = list(Visit.objects.filter(patient=patient).select_related("visit_type"))
    assert len(dosing_visits(visits)) == 2


def test_remission_is_called_out_when_the_latest_phq9_is_below_its_threshold(clinic, course):
    patient, doses = course
    answered(patient, "phq-9", 4, doses[2].start + timedelta(days=20))
    phq = courses_for(patient)[1]
    assert (phq.remission, phq.response, phq.outcome) == (True, True, "remission")
    assert "Remission (below 5): yes." in chart_of(phq, [], clinic.clinic.tz).summary


def test_clinic_admins_see_the_charts_on_the_patients_desk_page_with_a_table_of_the_same(
    client, clinic, course
):
    patient, _ = course
    admin = clinic_admin()
    sign_in_verified(client, admin)
    section = _section(client.get(reverse("desk_patient", args=[patient.pk])).text)
    assert section.count('<figure class="score-chart">') == 2
    assert section.count('class="sc-dose"') == 3 * 2  # both charts mark the doses
    assert "Patient Health Questionnaire (PHQ-9): scores over time" in section
    # The text alternative: caption and a table of date, score, band, change.
    table = section.split("PHQ-9 scores as a table", 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r"<tr><td[^>]*>([^<]+)</td><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>", table
    )
    assert [(total, band, change) for _, total, band, change in rows] == [
        ("18", "Moderately severe", "baseline"),
        ("11", "Moderate", "-7"),
        ("7", "Mild", "-11"),
    ]
    assert "Response</span>" in section
    event = AuditEvent.objects.filter(action=AuditAction.VIEWED_PATIENT).latest("pk")
    assert (event.patient_id, event.detail, event.actor) == (
        patient.pk,
        "with questionnaire scores",
        admin,
    )


def test_the_front_desk_sees_no_scores_only_whose_they_are(client, clinic, course):
    patient, _ = course
    client.force_login(front_desk())
    section = _section(client.get(reverse("desk_patient", args=[patient.pk])).text)
    assert "visible to the patient's clinicians and clinic admins only" in section
    assert "score-chart" not in section and "18" not in section
    event = AuditEvent.objects.filter(action=AuditAction.VIEWED_PATIENT).latest("pk")
    assert event.detail == ""


def test_the_admins_patient_page_reads_one_query_more_whatever_the_number_of_scores(
    client, clinic, course, django_assert_num_queries
):
    patient, doses = course
    sign_in_verified(client, clinic_admin())
    url = reverse("desk_patient", args=[patient.pk])
    client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for day in range(10):
        answered(patient, "phq-9", day + 3, doses[2].start + timedelta(days=30 + day))
        answered(patient, "gad-7", day + 2, doses[2].start + timedelta(days=30 + day))
    with django_assert_num_queries(len(few)):
        client.get(url)


def test_a_desk_user_who_is_also_the_patients_clinician_sees_the_charts_on_the_desk_page(
    client, clinic, course
):
    patient, _ = course
    prescriber = clinic.prescriber.user  # on the patient's doses
    prescriber.groups.add(front_desk().groups.get())
    prescriber.memberships.create(clinic=clinic.clinic, role=StaffRole.FRONT_DESK)
    sign_in_verified(client, prescriber)
    section = _section(client.get(reverse("desk_patient", args=[patient.pk])).text)
    assert section.count('<figure class="score-chart">') == 2
    # Not the therapist, who has no visit with this patient.
    therapist = clinic.therapist.user
    therapist.groups.add(front_desk().groups.get())
    therapist.memberships.create(clinic=clinic.clinic, role=StaffRole.FRONT_DESK)
    sign_in_verified(client, therapist)
    section = _section(client.get(reverse("desk_patient", args=[patient.pk])).text)
    assert "score-chart" not in section
