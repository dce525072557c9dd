"""Dose spacing and the weekly maximum hold for every dosing booking and move.

With a care plan, its protocol decides (docs/rules.md, dose spacing); without
one, the visit type's own numbers, or its route's defaults: IV, IM and lozenge
doses at least 24 h apart and at most 3 in any 7 days, intranasal (Spravato) at
least 48 h apart and at most 2. Doses of two routes keep the stricter of the two.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import translation

from plans.models import CarePlan, PlanStatus, Protocol
from scheduler import booking
from scheduler.booking import BookingError
from scheduler.models import DosingRoute, Modality, Visit, VisitKind, VisitType
from tests.conftest import MONDAY, at
from tests.language_helpers import english_left
from tests.page_helpers import admin_form_data

pytestmark = pytest.mark.usefixtures("now")


def day(offset: int):
    return MONDAY + timedelta(days=offset)


def dose(clinic, patient, offset: int, hh_mm: str = "08:00", visit_type=None) -> Visit:
    visit_type = visit_type or clinic.iv
    room = clinic.room1 if visit_type.room_capability == clinic.infusion_chair else clinic.room2
    return booking.book(
        patient=patient,
        visit_type=visit_type,
        clinician=clinic.prescriber,
        room=room,
        start=at(day(offset), hh_mm),
    )


@pytest.fixture
def intranasal(clinic) -> VisitType:
    return clinic.visit_type(
        "intranasal-dosing",
        VisitKind.DOSING,
        120,
        "prescriber",
        Modality.IN_PERSON,
        clinic.monitoring,
        dosing_route=DosingRoute.INTRANASAL,
    )


def test_two_iv_infusions_four_hours_apart_are_refused_without_a_care_plan(clinic):
    patient = clinic.patient()
    dose(clinic, patient, 0, "08:00")
    with pytest.raises(BookingError, match="at least 1 day apart"):
        dose(clinic, patient, 0, "12:00")
    assert Visit.objects.filter(patient=patient, visit_type=clinic.iv).count() == 1
    dose(clinic, patient, 1, "08:00")  # 24 h later is allowed
    assert Visit.objects.filter(patient=patient, visit_type=clinic.iv).count() == 2


def test_a_fourth_infusion_in_seven_days_is_refused_without_a_care_plan(clinic):
    patient = clinic.patient()
    for offset in (0, 1, 2):
        dose(clinic, patient, offset)
    with pytest.raises(BookingError, match="at most 3 doses in any 7 days"):
        dose(clinic, patient, 3)
    dose(clinic, patient, 7)  # a week after the first: that one is out of the window
    assert Visit.objects.filter(patient=patient, visit_type=clinic.iv).count() == 4


def test_a_manual_move_without_a_care_plan_keeps_the_spacing(clinic):
    patient = clinic.patient()
    dose(clinic, patient, 0, "08:00")
    second = dose(clinic, patient, 2, "08:00")
    with pytest.raises(BookingError, match="at least 1 day apart"):
        booking.move(second, start=at(day(0), "14:00"))
    second.refresh_from_db()
    assert (second.start, second.sequence) == (at(day(2), "08:00"), 0)


def test_spravato_doses_without_a_plan_are_48_hours_apart_and_two_a_week(clinic, intranasal):
    patient = clinic.patient()
    dose(clinic, patient, 0, visit_type=intranasal)
    with pytest.raises(BookingError, match="at least 2 days apart"):
        dose(clinic, patient, 1, "12:00", visit_type=intranasal)  # 28 h later
    dose(clinic, patient, 2, visit_type=intranasal)
    with pytest.raises(BookingError, match="at most 2 doses in any 7 days"):
        dose(clinic, patient, 4, visit_type=intranasal)
    assert Visit.objects.filter(patient=patient, visit_type=intranasal).count() == 2


def test_doses_of_two_routes_keep_the_stricter_spacing_in_either_order(clinic, intranasal):
    first, second = clinic.patient("Avery"), clinic.patient("Blake")
    dose(clinic, first, 0)
    with pytest.raises(BookingError, match="at least 2 days apart"):
        dose(clinic, first, 1, "14:00", visit_type=intranasal)  # 30 h after the infusion
    dose(clinic, second, 7, visit_type=intranasal)
    with pytest.raises(BookingError, match="at least 2 days apart"):
        dose(clinic, second, 8, "14:00")  # 30 h after the nasal spray
    assert Visit.objects.filter(patient__in=[first, second]).count() == 2


def test_a_visit_types_own_numbers_replace_its_routes_defaults(clinic):
    clinic.iv.min_hours_between_doses = 72
    clinic.iv.max_doses_per_week = 1
    clinic.iv.full_clean()
    clinic.iv.save()
    patient = clinic.patient()
    dose(clinic, patient, 0)
    with pytest.raises(BookingError, match="at least 3 days apart"):
        dose(clinic, patient, 2)
    with pytest.raises(BookingError, match="at most 1 dose in any 7 days"):
        dose(clinic, patient, 4)
    dose(clinic, patient, 7)
    assert Visit.objects.filter(patient=patient, visit_type=clinic.iv).count() == 2


def test_dose_numbers_belong_to_dosing_visit_types_and_allow_a_dose_a_week(clinic):
    from django.core.exceptions import ValidationError

    clinic.screening.min_hours_between_doses = 24
    with pytest.raises(ValidationError, match="Only dosing visit types"):
        clinic.screening.full_clean()
    clinic.iv.max_doses_per_week = 0
    with pytest.raises(ValidationError, match="at least one a week"):
        clinic.iv.full_clean()


def test_a_care_plans_protocol_still_decides_for_its_patient(clinic):
    protocol = Protocol.objects.create(
        clinic=clinic.clinic,
        name="Daily induction",
        slug="daily",
        min_hours_between_doses=20,
        max_doses_per_week=5,
    )
    patient = clinic.patient()
    CarePlan.objects.create(
        patient=patient, protocol=protocol, status=PlanStatus.ACTIVE, start_date=day(0)
    )
    for offset in range(5):  # more than the route's 3 a week: the protocol allows 5
        dose(clinic, patient, offset)
    with pytest.raises(BookingError, match="Daily induction allows at most 5 doses"):
        dose(clinic, patient, 5)


def test_dose_numbers_are_edited_in_the_visit_types_admin_page(admin_client, clinic):
    url = reverse("admin:scheduler_visittype_change", args=[clinic.iv.pk])
    data = admin_form_data(admin_client.get(url))
    data.update(min_hours_between_doses="36", max_doses_per_week="2")
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    clinic.iv.refresh_from_db()
    assert (clinic.iv.min_hours_between_doses, clinic.iv.max_doses_per_week) == (36, 2)
    patient = clinic.patient()
    dose(clinic, patient, 0)
    with pytest.raises(BookingError, match="at least 36 h apart"):
        dose(clinic, patient, 1)


def test_the_spacing_rules_speak_the_active_language_with_the_gap_in_hours(clinic):
    patient = clinic.patient()
    dose(clinic, patient, 0, "08:00")
    with pytest.raises(BookingError) as english:
        dose(clinic, patient, 0, "11:30")
    assert "another dose is 3 h 30 min away" in str(english.value)
    with translation.override("es"), pytest.raises(BookingError) as spanish:
        dose(clinic, patient, 0, "11:30")
    words = str(spanish.value)
    assert "al menos 1 día" in words and "hay otra dosis a 3 h 30 min" in words
    assert english_left(words, str(clinic.iv)) == []

    protocol = Protocol(name="Weekly", max_doses_per_week=3, min_hours_between_doses=24)
    with translation.override("es"):
        problems = protocol.dose_problems(
            [at(day(d), "08:00") for d in range(3)], at(day(3), "08:00")
        )
        assert problems == ["Weekly permite como máximo 3 dosis en cualquier periodo de 7 días."]
