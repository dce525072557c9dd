"""The clinic's table of latest scores and a clinician's page for their patient: who sees whom,
worst first, a fixed number of queries, each look in the audit trail."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduler.models import AuditAction, AuditEvent, Visit, VisitStatus
from tests.conftest import MONDAY, at
from tests.page_helpers import clinic_admin, front_desk, sign_in_verified
from tests.score_helpers import answered


def _visit(clinic, patient, visit_type, clinician, start, status=VisitStatus.BOOKED):
    return Visit.objects.create(
        patient=patient,
        visit_type=visit_type,
        clinician=clinician,
        start=start,
        end=start + visit_type.duration,
        status=status,
    )


@pytest.fixture
def patients(clinic):
    """Avery and Casey see the therapist; Blake only the prescriber; Drew has a proposal with the
    therapist only (a plan under review: not the therapist's patient yet)."""
    avery = clinic.patient("Avery", "Applewood")
    blake = clinic.patient("Blake", "Birchwood")
    casey = clinic.patient("Casey", "Cedar")
    drew = clinic.patient("Drew", "Dogwood")
    _visit(clinic, avery, clinic.integration, clinic.therapist, at(MONDAY, "09:00"))
    _visit(clinic, casey, clinic.integration, clinic.therapist, at(MONDAY, "10:00"))
    _visit(clinic, blake, clinic.screening, clinic.prescriber, at(MONDAY, "09:00"))
    _visit(
        clinic,
        drew,
        clinic.integration,
        clinic.therapist,
        at(MONDAY, "11:00"),
        VisitStatus.PROPOSED,
    )
    start = at(MONDAY, "08:00") - timedelta(days=30)
    for patient, phq, gad in (
        (avery, (20, 9), (14, 6)),
        (blake, (12, 13), (8, 8)),
        (casey, (16, 4), (10, 3)),
        (drew, (25, 25), (20, 20)),
    ):
        for i, (p, g) in enumerate(zip(phq, gad, strict=True)):
            answered(patient, "phq-9", p, start + timedelta(days=14 * i))
            answered(patient, "gad-7", g, start + timedelta(days=14 * i, hours=1))
    return {"avery": avery, "blake": blake, "casey": casey, "drew": drew}


def _rows(page: str) -> list[tuple[str, ...]]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        tuple(
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        )
        for row in body.split("<tr>")[1:]
    ]


def test_clinic_admins_see_every_patients_latest_score_worst_first_per_instrument(client, patients):
    sign_in_verified(client, clinic_admin())
    rows = _rows(client.get(reverse("desk_scores"), {"instrument": "phq-9"}).text)
    assert [(r[0], r[2], r[3], r[5], r[6]) for r in rows] == [
        ("Drew Dogwood", "25", "Severe", "25", "+0 (+0 %)"),
        ("Blake Birchwood", "13", "Moderate", "12", "+1 (+8 %)"),
        ("Avery Applewood", "9", "Mild", "20", "-11 (-55 %)"),
        ("Casey Cedar", "4", "Minimal", "16", "-12 (-75 %)"),
    ]
    assert [r[7] for r in rows] == [
        "Neither response nor remission",
        "Neither response nor remission",
        "Response",
        "Remission Response",
    ]
    # Each name leads to the desk's page of the patient.
    page = client.get(reverse("desk_scores")).text
    assert reverse("desk_patient", args=[patients["avery"].pk]) in page
    # All instruments: each one's rows together, worst first within it.
    both = _rows(page)
    assert [r[1] for r in both] == ["GAD-7"] * 4 + ["PHQ-9"] * 4
    assert [int(r[2]) for r in both[:4]] == [20, 8, 6, 3]


def test_a_clinician_sees_only_their_own_patients_and_opens_their_page(client, clinic, patients):
    sign_in_verified(client, clinic.therapist.user)
    page = client.get(reverse("desk_scores"), {"instrument": "phq-9"}).text
    assert [r[0] for r in _rows(page)] == ["Avery Applewood", "Casey Cedar"]
    assert "Birchwood" not in page and "Dogwood" not in page
    assert reverse("my_patient", args=[patients["avery"].pk]) in page
    assert reverse("desk_patient", args=[patients["avery"].pk]) not in page
    own = client.get(reverse("my_patient", args=[patients["avery"].pk])).text
    assert own.count('<figure class="score-chart">') == 2 and "Avery Applewood" in own
    for other in ("blake", "drew"):
        assert client.get(reverse("my_patient", args=[patients[other].pk])).status_code == 404


def test_the_front_desk_may_not_open_the_scores(client, patients):
    client.force_login(front_desk())
    assert client.get(reverse("desk_scores")).status_code == 403
    assert client.get(reverse("my_patient", args=[patients["avery"].pk])).status_code == 403


def test_an_unknown_instrument_in_the_address_shows_them_all(client, patients):
    sign_in_verified(client, clinic_admin())
    assert len(_rows(client.get(reverse("desk_scores"), {"instrument": "nope"}).text)) == 8


def test_every_look_at_scores_is_in_the_audit_trail(client, clinic, patients):
    sign_in_verified(client, clinic.therapist.user)
    client.get(reverse("desk_scores"), {"instrument": "gad-7"})
    listed = AuditEvent.objects.filter(action=AuditAction.LISTED_PATIENTS).latest("pk")
    assert (listed.actor, listed.detail) == (
        clinic.therapist.user,
        "questionnaire scores: 2 rows, gad-7",
    )
    client.get(reverse("my_patient", args=[patients["casey"].pk]))
    viewed = AuditEvent.objects.filter(action=AuditAction.VIEWED_PATIENT).latest("pk")
    assert (viewed.patient_id, viewed.detail) == (
        patients["casey"].pk,
        "questionnaire scores (clinician's page)",
    )


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


# Four to know who asks (session, user, second factor, roles) and their clinician row; the
# table: the instruments for the filter, the scores, the clinic, the audit row; the
# clinician's page: their patient, the patient's visits, which are theirs, the scores, the
# audit row.
BOUNDS = {"table": 9, "clinician's page": 10}


@pytest.mark.parametrize("page", sorted(BOUNDS))
def test_each_score_page_reads_a_fixed_number_of_queries_whatever_the_number_of_scores(
    client, clinic, patients, page, django_assert_max_num_queries
):
    user = clinic.therapist.user
    sign_in_verified(client, user)
    url = {
        "table": reverse("desk_scores"),
        "clinician's page": reverse("my_patient", args=[patients["avery"].pk]),
    }[page]
    client.get(url)
    counts = [_queries(client, url)]
    for day in range(12):
        when = at(MONDAY, "08:00") + timedelta(days=day)
        for name in ("avery", "casey"):
            answered(patients[name], "phq-9", day, when)
            answered(patients[name], "gad-7", day, when + timedelta(hours=1))
        _visit(clinic, patients["avery"], clinic.iv, clinic.prescriber, when + timedelta(hours=3))
    counts.append(_queries(client, url))
    assert counts[0] == counts[1], counts
    with django_assert_max_num_queries(BOUNDS[page]):
        client.get(url)
