"""Patient data stays out of the logs, and a patient's data can be exported on request."""

import io
import json
import logging
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from notifications.models import Message
from notifications.patient_links import issue_patient_link
from scheduler import tokens
from scheduler.models import AuditAction, AuditEvent, Clinician, Patient, Visit
from scheduler.phones import format_for_display

START = "2030-01-07 09:00:00-05:00"  # a Monday morning in New York


@pytest.fixture
def demo(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", stdout=io.StringIO())


def private_strings() -> list[str]:
    """What must never be logged: every patient's name and phone number, as stored and shown."""
    found = []
    for patient in Patient.objects.all():
        found += [patient.last_name, f"{patient.first_name} {patient.last_name}"]
        if patient.mobile:
            found += [
                patient.mobile,
                patient.mobile.removeprefix("+1"),
                format_for_display(patient.mobile),
            ]
        if patient.email:
            found.append(patient.email)
    return [text for text in found if text]


@pytest.mark.django_db(transaction=True)
def test_a_full_day_of_work_logs_no_patient_names_or_numbers(
    client, caplog, messaging, twilio, settings
):
    caplog.set_level(logging.DEBUG)  # the root logger: everything the project's loggers pass on
    with time_machine.travel(START, tick=False) as clock:
        call_command("seed_demo", stdout=io.StringIO())
        patient = Patient.objects.filter(mobile__gt="").order_by("pk").first()
        out = io.StringIO()
        call_command(
            "plan",
            "--patient",
            str(patient.pk),
            "--protocol",
            "kap-lozenge",
            "--start",
            "2030-01-08",
            "--confirm",
            "--json",
            stdout=out,
        )
        assert json.loads(out.getvalue())["visits"]
        call_command(
            "dispatch_reminders",
            "--until",
            "2030-01-21T09:00:00-05:00",
            stdout=io.StringIO(),
        )
        assert twilio.messages, "the scenario must send texts to say anything"
        twilio.deliver_all(client=client)
        twilio.text_from(patient.mobile, "C", client=client)
        twilio.text_from(
            patient.mobile, f"This is {patient.first_name} {patient.last_name}", client=client
        )
        twilio.text_from("+12125559876", "Who is this?", client=client)
        # Pages: the desk's, the patient's own, a clinician's feed; wrong links too.
        client.force_login(get_user_model().objects.get(username="frontdesk"))
        for url in (
            reverse("desk_today"),
            reverse("desk_patient", args=[patient.pk]),
            reverse("desk_patients") + f"?q={patient.last_name}",
            reverse("desk_messages"),
            reverse("desk_visit", args=[Visit.objects.filter(patient=patient).first().pk]),
            reverse("desk_patient", args=[999999]),
        ):
            assert client.get(url).status_code in (200, 404)
        client.logout()
        link = issue_patient_link(patient).removeprefix(settings.SITE_URL)
        assert client.get(link).status_code == 200
        assert client.get(link.replace(link[3:10], "x" * 7)).status_code == 404
        _, raw = tokens.issue(Clinician.objects.order_by("pk").first())
        assert client.get(reverse("calendar_feed", args=[raw])).status_code == 200
        clock.shift(timedelta(days=1))
    logged = caplog.text + "\n".join(
        f"{record.getMessage()} {record.args!r}" for record in caplog.records
    )
    assert caplog.records, "logging must have been captured for this test to mean anything"
    leaks = [text for text in private_strings() if text in logged]
    assert leaks == []
    assert Message.objects.exists()


def test_sql_with_its_parameters_is_never_logged_even_at_debug(settings):
    """Query parameters hold names and numbers: the database logger stays at WARNING."""
    assert settings.LOGGING["loggers"]["django.db.backends"]["level"] == "WARNING"
    assert logging.getLogger("django.db.backends").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("twilio.http_client").getEffectiveLevel() >= logging.WARNING


@pytest.mark.django_db
def test_export_patient_writes_everything_about_one_patient_and_nothing_else(demo, tmp_path):
    patient, other = Patient.objects.order_by("pk")[:2]
    target = tmp_path / "export.json"
    call_command("export_patient", str(patient.pk), "--output", str(target), stderr=io.StringIO())
    data = json.loads(target.read_text())
    assert data["patient"][0]["fields"]["last_name"] == patient.last_name
    text = target.read_text()
    assert other.last_name not in text
    assert all(v["fields"]["patient"] == patient.pk for v in data["visits"])
    assert "claim_token" not in text and "digest" not in text
    event = AuditEvent.objects.get(action=AuditAction.EXPORTED)
    assert (event.patient, event.actor_label) == (patient, "system")


@pytest.mark.django_db
def test_export_of_an_unknown_patient_says_so(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No patient with id 424242"):
        call_command("export_patient", "424242")
    assert not AuditEvent.objects.exists()
