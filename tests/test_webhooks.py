"""Twilio's webhooks: signed delivery reports move messages forward only, and patients'
texts opt out, opt in, ask for help, confirm, ask to reschedule, or reach the front desk."""

from datetime import timedelta

import pytest
from django.test import Client

from notifications.dispatch import Dispatcher, dispatch
from notifications.models import Channel, InboundKind, InboundMessage, Message, Status
from plans.models import Screening
from scheduler.models import ConsentMethod, VisitStatus
from tests.conftest import MONDAY, at
from tests.fake_twilio import (
    FROM_NUMBER,
)
from tests.reminder_helpers import (
    HOUR,
    ReminderClinic,
    messages_of,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging", "twilio")]
VISIT = at(MONDAY, "10:00")
DUE = VISIT - 72 * HOUR
STATUS_URL = "https://clinic.example.org/webhooks/twilio/status"
INBOUND_URL = "https://clinic.example.org/webhooks/twilio/inbound"


@pytest.fixture
def clinic(db):
    return ReminderClinic()


@pytest.fixture
def visit(clinic):
    return clinic.book(clinic.texting_patient(), clinic.screening, VISIT)


@pytest.fixture
def sent(visit, now, twilio):
    """The visit's 72 h text, sent to the fake Twilio: (Message, Twilio's record of it)."""
    now.move_to(DUE)
    dispatch()
    message = messages_of(visit, channel=Channel.SMS, status=Status.QUEUED)[0]
    return message, twilio.messages[0]


# -- delivery reports -----------------------------------------------------------------


def test_delivery_reports_move_a_message_forward_only_and_repeat_harmlessly(sent, twilio, client):
    message, record = sent
    assert twilio.callback(record, "sent", client=client) == 204
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert twilio.callback(record, "delivered", client=client) == 204
    message.refresh_from_db()
    assert message.status == Status.DELIVERED and message.delivered_at == DUE
    # Twilio retries and reorders: a late "sent" and a repeated "delivered" change nothing.
    assert twilio.callback(record, "sent", client=client) == 204
    assert twilio.callback(record, "delivered", client=client) == 204
    message.refresh_from_db()
    assert message.status == Status.DELIVERED


def test_an_undelivered_report_is_final_and_keeps_the_error_code(sent, twilio, client):
    message, record = sent
    twilio.callback(record, "undelivered", error_code="30003", client=client)
    twilio.callback(record, "delivered", client=client)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (Status.UNDELIVERED, "30003")
    assert "unreachable handset" in message.last_error
    assert message in Message.objects.needs_attention()


def test_a_report_of_error_21610_records_the_opt_out(sent, twilio, client):
    message, record = sent
    twilio.callback(record, "failed", error_code="21610", client=client)
    message.patient.refresh_from_db()
    assert message.patient.sms_opted_out_at is not None
    assert not message.patient.can_receive_sms


def test_a_report_that_arrives_before_our_own_record_of_the_sid_still_counts(
    visit, now, twilio, client
):
    now.move_to(DUE)
    dispatcher = Dispatcher()
    batch = dispatcher.claim(10)
    batch.prepare()
    batch.mark()
    message, outgoing = next((m, o) for m, o in batch.sending if m.channel == Channel.SMS)
    accepted = dispatcher.transport(Channel.SMS).send(outgoing)
    # Twilio is quick: its "sent" lands before the dispatcher writes the SID down.
    assert twilio.callback(twilio.messages[0], "sent", client=client) == 204
    batch.accepted(message, accepted)
    batch.record()
    message.refresh_from_db()
    assert (message.status, message.provider_id) == (Status.SENT, accepted.provider_id)
    assert message.sent_at == DUE


def test_requests_not_signed_by_twilio_for_our_public_url_are_refused(sent, twilio, client):
    message, record = sent
    params = {"MessageSid": record["sid"], "MessageStatus": "delivered"}
    url = f"{STATUS_URL}?m={message.pk}"
    assert twilio.post_signed(url, params, client=client, signature="")[0] == 403
    assert twilio.post_signed(url, params, client=client, signature="bm90IGl0")[0] == 403
    # Signed for the address the proxy forwarded to, not the public one.
    internal = f"http://testserver/webhooks/twilio/status?m={message.pk}"
    assert (
        client.post(
            f"/webhooks/twilio/status?m={message.pk}",
            params,
            HTTP_X_TWILIO_SIGNATURE=twilio.sign(internal, params),
        ).status_code
        == 403
    )
    # Signed, then a parameter changed on the way.
    signature = twilio.sign(url, params)
    tampered = {**params, "MessageStatus": "failed"}
    assert twilio.post_signed(url, tampered, client=client, signature=signature)[0] == 403
    message.refresh_from_db()
    assert message.status == Status.QUEUED


def test_without_an_auth_token_nothing_is_accepted(sent, twilio, client, settings):
    _, record = sent
    settings.TWILIO_AUTH_TOKEN = ""
    assert twilio.callback(record, "delivered", client=client) == 403


def test_webhooks_take_only_posts_of_modest_size_and_need_no_csrf_token(sent, twilio):
    _, record = sent
    strict = Client(enforce_csrf_checks=True)
    assert strict.get("/webhooks/twilio/status").status_code == 405
    assert strict.get("/webhooks/twilio/inbound").status_code == 405
    huge = {"MessageSid": record["sid"], "Body": "x" * 20_000}
    assert twilio.post_signed(INBOUND_URL, huge, client=strict)[0] == 413
    assert twilio.callback(record, "delivered", client=strict) == 204


# -- texts from patients --------------------------------------------------------------


def reply_of(twiml: str) -> str:
    start, end = twiml.find("<Message>"), twiml.find("</Message>")
    return twiml[start + len("<Message>") : end] if start >= 0 else ""


@pytest.mark.parametrize(
    ("body", "twilio_confirms"),
    [
        ("STOP", True),
        ("stop", True),
        (" Stop ", True),
        ("STOPALL", True),
        ("UNSUBSCRIBE", True),
        ("end", True),
        ("QUIT", True),
        ("Cancel", True),
        ("REVOKE", True),
        ("OPTOUT", True),
        ("Opt out", True),
        ("Stop.", False),
        ("opt-out", False),
    ],
)
def test_an_opt_out_keyword_ends_texts_at_once_and_is_confirmed_once(
    visit, twilio, client, body, twilio_confirms
):
    status, twiml = twilio.text_from(visit.patient.mobile, body, client=client)
    assert status == 200 and "<Response" in twiml
    # Twilio confirms the bare keywords itself; a second confirmation would be ours.
    assert (reply_of(twiml) == "") == twilio_confirms
    visit.patient.refresh_from_db()
    assert visit.patient.sms_opted_out_at is not None and not visit.patient.can_receive_sms
    assert {m.status for m in messages_of(visit, channel=Channel.SMS)} == {Status.CANCELLED}
    assert {m.status for m in messages_of(visit, channel=Channel.EMAIL)} == {Status.PENDING}
    assert InboundMessage.objects.get().kind == InboundKind.OPT_OUT


@pytest.mark.parametrize(
    "body", ["Stop texting me", "please stop", "Don't text me anymore", "unsubscribe me please"]
)
def test_a_stop_texting_me_reply_opts_out_too_and_we_confirm_it(visit, twilio, client, body):
    status, twiml = twilio.text_from(visit.patient.mobile, body, client=client)
    assert status == 200
    assert "no more texts" in reply_of(twiml) and "START" in reply_of(twiml)
    visit.patient.refresh_from_db()
    assert not visit.patient.can_receive_sms


@pytest.mark.parametrize("body", ["End of the week works for me", "Cancel my appointment please"])
def test_words_that_merely_start_like_a_keyword_reach_the_front_desk(visit, twilio, client, body):
    twilio.text_from(visit.patient.mobile, body, client=client)
    visit.patient.refresh_from_db()
    assert visit.patient.can_receive_sms
    assert InboundMessage.objects.inbox().get().kind == InboundKind.OTHER


def test_start_after_stop_records_consent_by_text_and_revives_the_texts_still_to_come(
    visit, twilio, client, now
):
    twilio.text_from(visit.patient.mobile, "STOP", client=client)
    now.shift(timedelta(hours=1))
    status, twiml = twilio.text_from(visit.patient.mobile, "START", client=client)
    assert status == 200 and reply_of(twiml) == ""
    visit.patient.refresh_from_db()
    assert visit.patient.can_receive_sms
    assert visit.patient.sms_consent_method == ConsentMethod.SMS_KEYWORD
    assert {m.status for m in messages_of(visit, channel=Channel.SMS)} == {Status.PENDING}


@pytest.mark.parametrize("body", ["HELP", "info"])
def test_help_answers_with_clinic_phone_frequency_and_how_to_stop(visit, twilio, client, body):
    status, twiml = twilio.text_from(visit.patient.mobile, body, client=client)
    assert status == 200
    answer = reply_of(twiml)
    assert "Test Clinic America/New_York" in answer
    assert "(212) 555-0100" in answer
    assert "frequency varies" in answer and "Reply STOP to opt out" in answer


def test_c_confirms_the_next_visit_and_a_retried_webhook_changes_nothing(
    clinic, visit, twilio, client
):
    later = clinic.book(visit.patient, clinic.screening, VISIT + timedelta(days=7))
    status, twiml = twilio.text_from(visit.patient.mobile, "C", client=client, sid="SM" + "c" * 32)
    assert reply_of(twiml) == "Thank you, Avery: your visit on Mon Jun 3 at 10:00 AM is confirmed."
    visit.refresh_from_db()
    later.refresh_from_db()
    assert (visit.status, later.status) == (VisitStatus.CONFIRMED, VisitStatus.BOOKED)
    again = twilio.text_from(visit.patient.mobile, "C", client=client, sid="SM" + "c" * 32)
    assert again == (status, twiml)
    assert InboundMessage.objects.get().visit == visit


def test_c_that_cannot_confirm_goes_to_the_front_desk_with_the_reason(clinic, twilio, client):
    patient = clinic.texting_patient()
    dosing = clinic.book(patient, clinic.iv, VISIT)
    Screening.objects.filter(patient=patient).update(cleared=False)
    status, twiml = twilio.text_from(patient.mobile, "c", client=client)
    assert status == 200
    assert "we will call you" in reply_of(twiml)
    dosing.refresh_from_db()
    assert dosing.status == VisitStatus.BOOKED
    inbound = InboundMessage.objects.inbox().get()
    assert inbound.visit == dosing and "screening" in inbound.outcome


def test_c_without_an_upcoming_visit_says_so(clinic, twilio, client):
    patient = clinic.texting_patient()
    status, twiml = twilio.text_from(patient.mobile, "C", client=client)
    assert status == 200
    assert "no upcoming visit" in reply_of(twiml)


def test_r_flags_the_next_visit_for_a_call_back(visit, twilio, client):
    status, twiml = twilio.text_from(visit.patient.mobile, "R", client=client)
    assert status == 200
    assert "We will call you to find a new time for your visit on Mon Jun 3" in reply_of(twiml)
    flagged = InboundMessage.objects.inbox().get()
    assert (flagged.kind, flagged.visit, flagged.patient) == (
        InboundKind.RESCHEDULE,
        visit,
        visit.patient,
    )


def test_anything_else_lands_in_the_front_desk_inbox(visit, twilio, client):
    status, twiml = twilio.text_from(visit.patient.mobile, "Can I bring my partner?", client=client)
    assert status == 200
    assert "front desk" in reply_of(twiml) and "911" in reply_of(twiml)
    inbound = InboundMessage.objects.inbox().get()
    assert (inbound.body, inbound.patient, inbound.to_number) == (
        "Can I bring my partner?",
        visit.patient,
        FROM_NUMBER,
    )


def test_a_text_from_an_unknown_number_is_kept_for_the_front_desk(clinic, twilio, client):
    twilio.text_from("+12125559999", "Hello?", client=client)
    inbound = InboundMessage.objects.inbox().get()
    assert inbound.patient is None and inbound.from_number == "+12125559999"


def test_two_patients_sharing_a_number_both_opt_out(clinic, twilio, client):
    first = clinic.texting_patient("Parent")
    second = clinic.texting_patient("Child")
    second.mobile = first.mobile
    second.save()
    twilio.text_from(first.mobile, "STOP", client=client)
    first.refresh_from_db()
    second.refresh_from_db()
    assert not first.can_receive_sms and not second.can_receive_sms


# -- over real HTTP ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_reports_and_texts_over_real_http_to_the_live_server(live_server, now, twilio, settings):
    settings.SITE_URL = live_server.url
    clinic = ReminderClinic()
    visit = clinic.book(clinic.texting_patient(), clinic.screening, VISIT)
    now.move_to(DUE)
    dispatch()
    assert twilio.deliver_all() == [204, 204]
    message = messages_of(visit, channel=Channel.SMS, status=Status.DELIVERED)
    assert len(message) == 1
    assert message[0].provider_id == twilio.messages[0]["sid"]
    status, twiml = twilio.text_from(visit.patient.mobile, "R")
    assert status == 200 and "We will call you" in twiml
    assert InboundMessage.objects.inbox().count() == 1


@pytest.mark.parametrize("sender", ["+442079460000", "+15005550006", "12345", "Short code 7"])
@pytest.mark.parametrize("body", ["Hello?", "STOP", "C"])
def test_a_signed_text_from_a_number_no_patient_could_have_is_kept_and_answered(
    clinic, twilio, client, sender, body
):
    """A landline, a test number or a short code: Twilio would retry a 5xx for hours."""
    status, _ = twilio.text_from(sender, body, client=client)
    assert status == 200
    inbound = InboundMessage.objects.get()
    assert inbound.patient is None and inbound.from_number == sender[:32]
    assert inbound.outcome == "No patient has this number."
    # The desk sees it, except an opt-out from a number we never text anyway.
    assert inbound.needs_attention == (body != "STOP")
