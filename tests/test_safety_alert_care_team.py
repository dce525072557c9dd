"""Who hears of an alert at once: the prescriber and the therapist on the visit the questions were
asked before; a role that visit lacks, from the patient's nearest other visit (the next one
to come, else the latest past one); nobody found, the clinic's clinical lead."""

from datetime import timedelta

import time_machine

from notifications.models import Message, Purpose
from scheduler import booking
from tests.conftest import at
from tests.safety_helpers import DOSE_DAY, OPEN_MORNING, SEVERAL_DAYS, answer_phq9, request_before


def told(purpose=Purpose.SAFETY_ALERT) -> set[str]:
    return set(
        Message.objects.filter(purpose=purpose).values_list("clinician__display_name", flat=True)
    )


def test_the_prescriber_and_therapist_on_the_visit_are_told(safety_clinic):
    patient = safety_clinic.patient("Avery", "Applewood")
    other = safety_clinic.clinician("Jo Other", "therapist")
    with time_machine.travel(OPEN_MORNING, tick=False):
        # Another therapist on a later visit: the dose's own team comes first.
        booking.book(
            patient=patient,
            visit_type=safety_clinic.integration,
            clinician=other,
            start=at(DOSE_DAY + timedelta(days=1), "10:00"),
        )
        dose = safety_clinic.dose(patient)
        answer_phq9(request_before(dose, OPEN_MORNING), item_9=SEVERAL_DAYS)
    assert told() == {"Dr. Alvarez", "Sam Rivers"}


def test_a_role_the_visit_lacks_comes_from_the_patients_next_visit(safety_clinic):
    patient = safety_clinic.patient("Avery", "Applewood")
    with time_machine.travel(OPEN_MORNING, tick=False):
        screening = booking.book(
            patient=patient,
            visit_type=safety_clinic.screening,
            clinician=safety_clinic.prescriber,
            room=safety_clinic.room3,
            start=at(DOSE_DAY, "09:00"),
        )
        booking.book(
            patient=patient,
            visit_type=safety_clinic.integration,
            clinician=safety_clinic.therapist,
            start=at(DOSE_DAY + timedelta(days=2), "10:00"),
        )
        answer_phq9(request_before(screening, OPEN_MORNING), item_9=SEVERAL_DAYS)
    assert told() == {"Dr. Alvarez", "Sam Rivers"}


def test_with_nobody_on_the_patients_visits_the_clinical_lead_is_told_at_once(safety_clinic):
    patient = safety_clinic.patient("Avery", "Applewood")
    nurse_led = safety_clinic.visit_type("check-in", "maintenance", 30, "nurse", "telehealth")
    with time_machine.travel(OPEN_MORNING, tick=False):
        visit = booking.book(
            patient=patient,
            visit_type=nurse_led,
            clinician=safety_clinic.nurse,
            start=at(DOSE_DAY, "09:00"),
        )
        answer_phq9(request_before(visit, OPEN_MORNING), item_9=SEVERAL_DAYS)
    assert told() == {"Dr. Lead"}
    assert Message.objects.filter(purpose=Purpose.SAFETY_ALERT).count() == 2
