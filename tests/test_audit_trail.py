"""The audit trail: who saw or changed which patient's data, when, from where; append-only."""

import io
import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from notifications.patient_links import issue_patient_link
from scheduler import booking
from scheduler.models import AuditAction, AuditEvent
from scheduler.roles import CLINIC_ADMINS_GROUP
from tests.conftest import MONDAY, at
from tests.page_helpers import front_desk, sign_in_verified, staff_user

pytestmark = pytest.mark.usefixtures("now")
BROWSER = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "Firefox/" + "x" * 500}


@pytest.fixture
def avery(clinic):
    return clinic.patient("Avery", "Applewood")


@pytest.fixture
def visit(clinic, avery):
    return booking.book(
        patient=avery,
        visit_type=clinic.integration,
        clinician=clinic.therapist,
        start=at(MONDAY, "10:00"),
    )


@pytest.fixture
def desk(client, db):
    user = front_desk()
    client.force_login(user)
    client.user = user
    return client


def only(action) -> AuditEvent:
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, events
    return events[0]


def test_opening_a_patients_desk_page_records_who_which_patient_and_from_where(desk, avery):
    assert desk.get(reverse("desk_patient", args=[avery.pk]), **BROWSER).status_code == 200
    event = only(AuditAction.VIEWED_PATIENT)
    assert (event.actor, event.actor_label, event.patient) == (
        desk.user,
        desk.user.username,
        avery,
    )
    assert event.ip_address == "203.0.113.7"
    assert event.user_agent.startswith("Firefox/") and len(event.user_agent) == 200


def test_changing_a_visit_on_the_desk_records_the_user_with_the_change(desk, visit):
    url = reverse("desk_visit", args=[visit.pk])
    desk.post(url, {"action": "cancel", "reason": "Patient asked"}, **BROWSER)
    changes = AuditEvent.objects.filter(action=AuditAction.CHANGED_VISIT).order_by("pk")
    # Booking from the shell (the fixture) is the system's; the cancel is the desk user's.
    assert [e.actor_label for e in changes] == ["system", desk.user.username]
    assert changes.last().detail == f"visit {visit.pk}: cancelled"
    assert changes.last().ip_address == "203.0.113.7"


def test_reading_the_message_queue_and_viewing_a_visit_are_recorded(desk, visit):
    desk.get(reverse("desk_messages"))
    desk.get(reverse("desk_visit", args=[visit.pk]))
    assert only(AuditAction.READ_MESSAGES).actor == desk.user
    assert only(AuditAction.VIEWED_VISIT).patient == visit.patient


def test_the_patient_page_is_recorded_as_the_patient_links_even_with_staff_signed_in(
    desk, avery, visit
):
    url = issue_patient_link(avery).removeprefix("http://localhost:8000")
    desk.get(url, **BROWSER)
    desk.post(url, {"visit": visit.pk, "action": "confirm"}, **BROWSER)
    viewed = only(AuditAction.VIEWED_PATIENT_LINK)
    assert (viewed.actor, viewed.actor_label, viewed.patient) == (None, "patient link", avery)
    confirmed = AuditEvent.objects.filter(action=AuditAction.CHANGED_VISIT).order_by("pk").last()
    assert (confirmed.actor_label, confirmed.detail) == (
        "patient link",
        f"visit {visit.pk}: confirmed",
    )


def test_a_refused_change_leaves_no_trace_of_a_change(desk, visit):
    booking.cancel(visit)
    desk.post(reverse("desk_visit", args=[visit.pk]), {"action": "check_in"})
    # Booked and cancelled; the refused check-in rolled back with its record.
    changes = AuditEvent.objects.filter(action=AuditAction.CHANGED_VISIT)
    assert [e.detail.split(": ")[1] for e in changes.order_by("pk")] == ["booked", "cancelled"]


def test_exporting_a_patient_is_recorded_and_lists_who_saw_them(desk, avery, visit):
    desk.get(reverse("desk_patient", args=[avery.pk]))
    out = io.StringIO()
    call_command("export_patient", str(avery.pk), "--requested-by", "Dr Who", stdout=out)
    data = json.loads(out.getvalue())
    assert data["patient"][0]["fields"]["last_name"] == "Applewood"
    assert [v["pk"] for v in data["visits"]] == [visit.pk]
    assert {e["fields"]["action"] for e in data["access_log"]} >= {"viewed_patient"}
    assert only(AuditAction.EXPORTED).detail == "manage.py export_patient Dr Who"


def test_events_cannot_be_changed_or_deleted(desk, avery):
    desk.get(reverse("desk_patient", args=[avery.pk]))
    event = only(AuditAction.VIEWED_PATIENT)
    event.detail = "nothing to see"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(detail="x")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).detail == ""


def test_clinic_admins_read_and_filter_the_trail_in_the_admin_but_nobody_edits_it(
    client, desk, avery
):
    desk.get(reverse("desk_patient", args=[avery.pk]))
    event = only(AuditAction.VIEWED_PATIENT)
    admin = staff_user(CLINIC_ADMINS_GROUP, is_staff=True)
    sign_in_verified(client, admin)
    changelist = reverse("admin:scheduler_auditevent_changelist")
    page = client.get(changelist, {"action": "viewed_patient"})
    assert page.status_code == 200 and desk.user.username in page.text
    assert client.get(changelist, {"action": "exported"}).status_code == 200
    change = reverse("admin:scheduler_auditevent_change", args=[event.pk])
    assert client.get(change).status_code == 200  # read-only view
    assert client.post(change, {"detail": "x"}).status_code == 403
    assert client.get(reverse("admin:scheduler_auditevent_add")).status_code == 403
    assert (
        client.get(reverse("admin:scheduler_auditevent_delete", args=[event.pk])).status_code == 403
    )
    assert AuditEvent.objects.get(pk=event.pk).detail == ""
    # Front desk staff, even with every model's view permission, do not see it.
    desk_staff = front_desk()
    desk_staff.is_staff = True
    desk_staff.save()
    desk_staff.groups.add(Group.objects.get_or_create(name="Clinicians")[0])
    sign_in_verified(client, desk_staff)
    assert client.get(changelist).status_code == 403


def test_clinic_admins_export_a_patient_from_the_admin_and_it_is_audited(client, avery):
    admin = staff_user(CLINIC_ADMINS_GROUP, is_staff=True, is_superuser=True)
    sign_in_verified(client, admin)
    response = client.post(
        reverse("admin:scheduler_patient_changelist"),
        {"action": "export_patient_data", "_selected_action": [avery.pk]},
    )
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content)["patient"][0]["pk"] == avery.pk
    assert only(AuditAction.EXPORTED).actor == admin


def test_opening_a_patient_in_the_admin_is_recorded(client, avery):
    admin = staff_user(CLINIC_ADMINS_GROUP, is_staff=True, is_superuser=True)
    sign_in_verified(client, admin)
    url = reverse("admin:scheduler_patient_change", args=[avery.pk])
    assert client.get(url).status_code == 200
    event = only(AuditAction.VIEWED_PATIENT)
    assert (event.actor, event.patient, event.detail) == (
        admin,
        avery,
        f"patient {avery.pk} (admin)",
    )


@pytest.fixture
def desk_in_the_admin(client, db):
    """A front-desk user in the admin, with the demo's front-desk permissions."""
    from desk import demo

    demo.seed()
    user = front_desk()
    user.is_staff = True
    user.save()
    client.force_login(user)
    client.user = user
    return client


def test_opening_a_visit_in_the_admin_is_recorded(desk_in_the_admin, visit):
    url = reverse("admin:scheduler_visit_change", args=[visit.pk])
    assert desk_in_the_admin.get(url, **BROWSER).status_code == 200
    event = only(AuditAction.VIEWED_VISIT)
    assert (event.actor, event.patient, event.detail) == (
        desk_in_the_admin.user,
        visit.patient,
        f"visit {visit.pk} (admin)",
    )
    assert event.ip_address == "203.0.113.7"


def test_the_admins_patient_list_is_recorded_with_what_it_showed(desk_in_the_admin, clinic, avery):
    clinic.patient("Blake", "Applewood")
    clinic.patient("Casey", "Birch")
    changelist = reverse("admin:scheduler_patient_changelist")
    assert desk_in_the_admin.get(changelist).status_code == 200
    assert desk_in_the_admin.get(changelist, {"q": "Applewood"}).status_code == 200
    events = AuditEvent.objects.filter(action=AuditAction.LISTED_PATIENTS).order_by("pk")
    assert [(e.actor, e.patient, e.detail) for e in events] == [
        (desk_in_the_admin.user, None, "patients list (admin): 3 shown, page 1"),
        (
            desk_in_the_admin.user,
            None,
            "patients list (admin): 2 shown, page 1, search 'Applewood'",
        ),
    ]


def test_the_admins_inbound_texts_are_recorded_in_the_list_and_one_by_one(desk_in_the_admin, avery):
    from notifications.webhooks import handle_inbound

    text = handle_inbound("SM" + "2" * 32, avery.mobile, "Running late, sorry")
    assert (
        desk_in_the_admin.get(reverse("admin:notifications_inboundmessage_changelist")).status_code
        == 200
    )
    change = reverse("admin:notifications_inboundmessage_change", args=[text.pk])
    assert desk_in_the_admin.get(change).status_code == 200
    events = AuditEvent.objects.filter(action=AuditAction.READ_MESSAGES).order_by("pk")
    assert [(e.actor, e.patient, e.detail) for e in events] == [
        (desk_in_the_admin.user, None, "inbound messages list (admin): 1 shown, page 1"),
        (desk_in_the_admin.user, avery, f"inbound message {text.pk} (admin)"),
    ]


def test_a_refused_or_failed_admin_request_records_no_view(desk_in_the_admin, visit):
    url = reverse("admin:scheduler_visit_change", args=[10**6])
    assert desk_in_the_admin.get(url).status_code == 302  # no such visit: back to the index
    # Lookups the admin cannot run: its "database error" page, with no patients on it.
    error_page = desk_in_the_admin.get(
        reverse("admin:scheduler_patient_changelist"), {"e": "1", "bogus__field": "x"}
    )
    assert error_page.status_code == 200 and "cl" not in error_page.context
    assert not AuditEvent.objects.filter(
        action__in=[AuditAction.VIEWED_VISIT, AuditAction.LISTED_PATIENTS]
    ).exists()


def test_a_visit_confirmed_by_text_reply_is_recorded_as_the_text_replys(client, visit, settings):
    from twilio.request_validator import RequestValidator

    settings.TWILIO_AUTH_TOKEN = "test-token"
    url = reverse("twilio-inbound")
    params = {"MessageSid": "SM" + "1" * 32, "From": visit.patient.mobile, "Body": "C"}
    signature = RequestValidator("test-token").compute_signature(settings.SITE_URL + url, params)
    assert client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200
    confirmed = AuditEvent.objects.filter(action=AuditAction.CHANGED_VISIT).order_by("pk").last()
    assert (confirmed.actor_label, confirmed.detail) == (
        "text reply",
        f"visit {visit.pk}: confirmed",
    )
