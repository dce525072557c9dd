"""The admin for reminders: policies editable, the outbox readable with a fixed number of
queries, failed messages visible and retryable, the inbox of patients' texts workable."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications.dispatch import dispatch
from notifications.models import (
    InboundKind,
    InboundMessage,
    Message,
    MessagingPreferences,
    ReminderPolicy,
    ReminderRule,
    Status,
)
from notifications.transports import PermanentError, SMSBackend
from tests.conftest import MONDAY, at
from tests.page_helpers import sign_in_verified
from tests.reminder_helpers import HOUR, ReminderClinic

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging")]
VISIT = at(MONDAY, "10:00")


@pytest.fixture
def clinic(db):
    return ReminderClinic()


@pytest.fixture
def staff(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_superuser("keeper", "keeper@example.com", "pw")
    sign_in_verified(client, user)
    return client


def book_some(clinic, count: int, first_hour: int = 8) -> None:
    for i in range(count):
        patient = clinic.texting_patient(f"Row{first_hour + i}")
        clinic.book(patient, clinic.screening, at(MONDAY, f"{first_hour + i:02d}:00"))


@pytest.mark.parametrize(
    "model",
    [ReminderPolicy, Message, InboundMessage, MessagingPreferences],
    ids=lambda m: m.__name__,
)
def test_every_reminder_page_opens(clinic, staff, model):
    book_some(clinic, 1)
    patient = clinic.clinic.patients.first()
    MessagingPreferences.objects.create(patient=patient)
    InboundMessage.objects.create(
        provider_id="SM1", from_number=patient.mobile, patient=patient, kind=InboundKind.OTHER
    )
    assert admin.site.is_registered(model)
    name = f"admin:notifications_{model._meta.model_name}"
    row = model.objects.order_by("pk").first()
    assert staff.get(reverse(f"{name}_changelist")).status_code == 200
    assert staff.get(reverse(f"{name}_change", args=[row.pk])).status_code == 200


@pytest.mark.parametrize("model_name", ["message", "inboundmessage", "reminderpolicy"])
def test_lists_take_the_same_queries_however_many_rows(clinic, staff, model_name):
    url = reverse(f"admin:notifications_{model_name}_changelist")
    book_some(clinic, 1)
    staff.get(url)  # the first page after signing in refreshes the session
    with CaptureQueriesContext(connection) as before:
        staff.get(url)
    book_some(clinic, 3, first_hour=9)
    for i, patient in enumerate(clinic.clinic.patients.all()):
        InboundMessage.objects.create(
            provider_id=f"SM{i}",
            from_number=patient.mobile,
            patient=patient,
            kind=InboundKind.OTHER,
        )
    with CaptureQueriesContext(connection) as after:
        staff.get(url)
    assert len(after) == len(before)


def test_a_policy_and_its_rules_are_edited_in_one_page(clinic, staff):
    policy = ReminderPolicy.objects.get(visit_type=clinic.screening)
    rules = list(policy.rules.order_by("pk"))
    form = {
        "visit_type": clinic.screening.pk,
        "is_active": "on",
        "notes": "",
        "rules-TOTAL_FORMS": str(len(rules)),
        "rules-INITIAL_FORMS": str(len(rules)),
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    for i, rule in enumerate(rules):
        form.update(
            {
                f"rules-{i}-id": rule.pk,
                f"rules-{i}-policy": policy.pk,
                f"rules-{i}-purpose": rule.purpose,
                f"rules-{i}-offset": "48:00:00" if rule.offset == 72 * HOUR else str(rule.offset),
                f"rules-{i}-timing": rule.timing,
                f"rules-{i}-by_email": "on",
                f"rules-{i}-is_active": "on",
            }
        )
    response = staff.post(
        reverse("admin:notifications_reminderpolicy_change", args=[policy.pk]), form
    )
    assert response.status_code == 302
    assert sorted(r.offset / HOUR for r in ReminderRule.objects.filter(policy=policy)) == [
        2,
        24,
        48,
    ]
    assert not ReminderRule.objects.filter(policy=policy, by_sms=True).exists()


def test_failed_messages_are_listed_for_attention_and_can_be_retried(clinic, staff, now, settings):
    book_some(clinic, 1)
    now.move_to(at(MONDAY, "08:00") - 72 * HOUR)
    settings.SMS_BACKEND = "tests.test_reminder_admin.RefusingBackend"
    dispatch()
    sign_in_verified(
        staff, get_user_model().objects.get(username="keeper")
    )  # the session idled out
    failed = Message.objects.get(status=Status.FAILED)
    url = reverse("admin:notifications_message_changelist")
    listing = staff.get(url, {"attention": "yes"})
    assert list(listing.context["cl"].result_list) == [failed]
    assert "No such number" in listing.text
    settings.SMS_BACKEND = "locmem"
    staff.post(url, {"action": "retry", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (Status.PENDING, 0)
    dispatch()
    failed.refresh_from_db()
    assert failed.status == Status.SENT


def test_inbox_texts_can_be_marked_handled(clinic, staff):
    book_some(clinic, 1)
    patient = clinic.clinic.patients.first()
    inbound = InboundMessage.objects.create(
        provider_id="SMx",
        from_number=patient.mobile,
        patient=patient,
        kind=InboundKind.RESCHEDULE,
        needs_attention=True,
    )
    url = reverse("admin:notifications_inboundmessage_changelist")
    assert list(staff.get(url, {"inbox": "open"}).context["cl"].result_list) == [inbound]
    staff.post(url, {"action": "mark_handled", "_selected_action": [inbound.pk]})
    inbound.refresh_from_db()
    assert inbound.handled_at is not None and inbound.handled_by.username == "keeper"
    assert not InboundMessage.objects.inbox().exists()


class RefusingBackend(SMSBackend):
    """An SMS backend that refuses every number (for the retry test)."""

    def deliver(self, sms):
        raise PermanentError("No such number.", code="21211")
