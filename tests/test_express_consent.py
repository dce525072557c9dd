"""Express consent to care texts: recorded on the patient with when and how, edited in the
admin, shown at the desk, exported with the patient's data, and revoked by an opt-out."""

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from notifications.models import MessagingPreferences
from notifications.rules import TextLimits, text_limits_for
from scheduler.models import ConsentMethod, Patient
from tests.conftest import SmallClinic
from tests.page_helpers import front_desk, sign_in_verified
from tests.reminder_helpers import CONSENTED_AT

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now")]
EXPRESS = {
    "sms_consent_at": CONSENTED_AT,
    "sms_consent_method": ConsentMethod.WEB_FORM,
    "sms_express_consent_at": CONSENTED_AT + timedelta(days=1),
    "sms_express_consent_method": ConsentMethod.PAPER_FORM,
}


@pytest.fixture
def clinic(db):
    return SmallClinic()


def test_express_consent_lifts_the_clinics_limits_until_the_patient_opts_out(clinic, settings):
    settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP = 1, 3
    patient = clinic.patient(**EXPRESS)
    assert patient.has_express_sms_consent
    assert text_limits_for(patient) == TextLimits(None, None)
    # STOP revokes it with the rest; START renews consent to texts, not this.
    patient.sms_opted_out_at = CONSENTED_AT + timedelta(days=30)
    patient.sms_consent_at = CONSENTED_AT + timedelta(days=31)
    assert patient.can_receive_sms and not patient.has_express_sms_consent
    assert text_limits_for(patient) == TextLimits(1, 3)
    patient.sms_express_consent_at = CONSENTED_AT + timedelta(days=32)
    assert text_limits_for(patient) == TextLimits(None, None)


def test_limits_a_patient_asked_for_apply_with_or_without_express_consent(clinic, settings):
    settings.SMS_DAILY_CAP, settings.SMS_WEEKLY_CAP = 1, 3
    consented = clinic.patient("Casey", **EXPRESS)
    MessagingPreferences.objects.create(patient=consented, sms_per_day=2)
    assert text_limits_for(consented) == TextLimits(2, None)
    plain = clinic.patient(
        "Dana", sms_consent_at=CONSENTED_AT, sms_consent_method=ConsentMethod.VERBAL
    )
    MessagingPreferences.objects.create(patient=plain, sms_per_week=2)
    assert text_limits_for(plain) == TextLimits(1, 2)
    # More than the clinic's limits takes express consent, not a number.
    more = MessagingPreferences(patient=clinic.patient("Emery"), sms_per_day=2)
    with pytest.raises(ValidationError, match="express consent"):
        more.full_clean()


def test_express_consent_needs_how_it_was_given_and_consent_to_texts(clinic):
    with pytest.raises(ValidationError) as refused:
        clinic.patient(**{**EXPRESS, "sms_express_consent_method": ""})
    assert "sms_express_consent_method" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        clinic.patient(**{**EXPRESS, "sms_consent_at": None, "sms_consent_method": ""})
    assert "sms_consent_at" in refused.value.message_dict


def test_staff_record_express_consent_in_the_admin(client, clinic, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    patient = clinic.patient(sms_consent_at=CONSENTED_AT, sms_consent_method=ConsentMethod.VERBAL)
    sign_in_verified(client, get_user_model().objects.create_superuser("root", password=None))
    change = reverse("admin:scheduler_patient_change", args=[patient.pk])
    page = client.get(change).context
    form = page["adminform"].form
    assert "sms_express_consent_at" in form.fields and "sms_express_consent_method" in form.fields
    data = {
        "clinic": clinic.clinic.pk,
        "first_name": patient.first_name,
        "last_name": patient.last_name,
        "date_of_birth": "1985-04-12",
        "mobile": patient.mobile,
        "email": patient.email,
        "time_zone": patient.time_zone,
        "contact_by_sms": "on",
        "contact_by_email": "on",
        "sms_consent_at_0": "2029-12-01",
        "sms_consent_at_1": "10:00",
        "sms_consent_method": ConsentMethod.VERBAL,
        "sms_express_consent_at_0": "2030-01-02",
        "sms_express_consent_at_1": "09:30",
        "sms_express_consent_method": ConsentMethod.PAPER_FORM,
        "_save": "Save",
    }
    for inline in page["inline_admin_formsets"]:  # the patient's visits, read-only: none
        management = inline.formset.management_form
        data.update({f"{management.prefix}-{name}": 0 for name in ("TOTAL_FORMS", "INITIAL_FORMS")})
    response = client.post(change, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    patient.refresh_from_db()
    assert patient.has_express_sms_consent
    assert patient.sms_express_consent_method == ConsentMethod.PAPER_FORM
    refused = client.post(change, {**data, "sms_express_consent_method": ""})
    assert "Record how the patient gave express consent." in refused.text


def test_the_desk_patient_page_shows_express_consent_and_the_limits_it_lifts(client, clinic):
    client.force_login(front_desk())
    consented = clinic.patient("Avery", **EXPRESS)
    page = client.get(reverse("desk_patient", args=[consented.pk])).text
    assert "Express consent to care texts</dt><dd>yes (2029-12-02, signed paper form)" in page
    assert "Text limits</dt><dd>none" in page
    plain = clinic.patient(
        "Blake", sms_consent_at=CONSENTED_AT, sms_consent_method=ConsentMethod.WEB_FORM
    )
    page = client.get(reverse("desk_patient", args=[plain.pk])).text
    assert "Express consent to care texts</dt><dd>none recorded" in page
    assert "Text limits</dt><dd>1 a day, 3 a week" in page
    Patient.objects.filter(pk=consented.pk).update(
        sms_opted_out_at=CONSENTED_AT + timedelta(days=9)
    )
    page = client.get(reverse("desk_patient", args=[consented.pk])).text
    assert "given 2029-12-02" in page and "not in force" in page


def test_the_patient_export_holds_express_consent(clinic, tmp_path):
    patient = clinic.patient(**EXPRESS)
    target = tmp_path / "export.json"
    call_command("export_patient", str(patient.pk), "--output", str(target), stderr=io.StringIO())
    fields = json.loads(target.read_text())["patient"][0]["fields"]
    assert fields["sms_express_consent_at"].startswith("2029-12-02T15:00:00")
    assert fields["sms_express_consent_method"] == "paper_form"
