"""The FHIR API at scale: a practitioner's month of Appointments, and a patient's whole record.

Both through Django's test client with a client token, as an EHR would ask:
the busiest clinician's month (one page of up to 200, the patients included)
and ``Patient/<id>/$everything`` for the patient with the most visits.
"""

from datetime import timedelta

from django.db.models import Count, Q
from django.test import Client

from benchmarks.dataset import Dataset
from benchmarks.measure import Figure, Report, latency, queries, timed
from fhirapi.models import ApiClient, ApiToken
from scheduler.models import Clinician, Patient

SCOPES = "system/*.rs"


def _token(dataset: Dataset) -> str:
    client = ApiClient.objects.create(name="Benchmark EHR", clinic=dataset.clinic, scopes=SCOPES)
    _, secret = ApiToken.issue(client, SCOPES, timedelta(hours=2))
    return secret


def paths(dataset: Dataset) -> dict[str, str]:
    tz = dataset.clinic.tz
    first = dataset.now.astimezone(tz).date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    month = Q(participations__start__date__gte=first, participations__start__date__lt=following)
    busiest = (
        Clinician.objects.filter(clinic=dataset.clinic)
        .annotate(n=Count("participations", filter=month))
        .order_by("-n", "pk")
        .first()
    )
    patient = (
        Patient.objects.filter(clinic=dataset.clinic)
        .annotate(n=Count("visits"))
        .order_by("-n", "pk")
        .first()
    )
    return {
        "Appointment search, a practitioner's month": (
            f"/fhir/Appointment?practitioner=Practitioner/{busiest.pk}"
            f"&date=ge{first}&date=lt{following}&_count=200&_include=Appointment:patient"
        ),
        "Patient $everything, a full course": f"/fhir/Patient/{patient.pk}/$everything",
    }


def run(dataset: Dataset, report: Report, runs: int) -> None:
    token = _token(dataset)
    client = Client()
    section = "FHIR API, test client"
    for name, path in paths(dataset).items():

        def get(path=path):
            return client.get(
                path,
                secure=True,
                HTTP_ACCEPT="application/fhir+json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )

        first = get()
        assert first.status_code == 200, (path, first.status_code, first.content[:300])
        entries = len(first.json().get("entry", []))
        report.add(
            Figure(
                section,
                name,
                {
                    **latency(timed(get, runs)),
                    "queries": queries(get),
                    "entries": entries,
                    "KiB": len(first.content) // 1024,
                },
            )
        )
