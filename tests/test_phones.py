"""Mobile numbers are validated and stored as E.164."""

from datetime import date

import pytest
from django.core.exceptions import ValidationError

from scheduler.models import Patient
from scheduler.phones import normalize_mobile


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("(212) 555-0147", "+12125550147"),
        ("212.555.0147", "+12125550147"),
        ("+1 212 555 0147", "+12125550147"),
        ("+44 7911 123456", "+447911123456"),
    ],
)
def test_numbers_people_type_are_stored_as_e164(typed, stored):
    assert normalize_mobile(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "Enter a mobile number"),
        ("not a number", "is not a phone number"),
        ("+1 212 555", "is not a valid phone number"),
        ("(800) 555-0100", "is not a mobile number"),  # toll-free
        ("+44 20 7946 0958", "is not a mobile number"),  # a London landline
        ("1" * 60, "too long"),
    ],
)
def test_invalid_and_non_mobile_numbers_get_a_clear_error(typed, reason):
    with pytest.raises(ValidationError, match=reason):
        normalize_mobile(typed)


@pytest.mark.django_db
def test_patient_cleaning_normalises_and_rejects_numbers(clinic):
    patient = Patient(
        clinic=clinic.clinic,
        first_name="Rowan",
        last_name="Example",
        date_of_birth=date(1990, 1, 1),
        mobile="(646) 555-0123",
    )
    patient.full_clean()
    assert patient.mobile == "+16465550123"
    assert patient.mobile_display == "(646) 555-0123"
    patient.mobile = "555"
    with pytest.raises(ValidationError) as refused:
        patient.full_clean()
    assert "mobile" in refused.value.message_dict


@pytest.mark.django_db
def test_text_consent_needs_how_it_was_given_and_is_lost_on_opt_out(clinic):
    from django.utils import timezone

    patient = clinic.patient()
    assert not patient.can_receive_sms
    patient.sms_consent_at = timezone.now()
    with pytest.raises(ValidationError, match="Record how the patient agreed"):
        patient.full_clean()
    patient.sms_consent_method = "paper_form"
    patient.full_clean()
    assert patient.can_receive_sms
    patient.sms_opted_out_at = timezone.now()
    assert not patient.can_receive_sms
