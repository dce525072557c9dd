"""One text for a patient's messages of a day (express consent): each message goes exactly
once, as part of one text, through a dying dispatcher, a timeout, a refusal and a retry
from the desk, and every delivery report of that text reaches each of them. Against the
Twilio-compatible server on loopback (tests/fake_twilio.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.dispatch import Dispatcher, dispatch
from notifications.models import Channel, Message, Status
from scheduler import booking
from scheduler.models import ConsentMethod, Patient
from tests.conftest import MONDAY, at
from tests.fake_twilio import Failure
from tests.reminder_helpers import CONSENTED_AT, HOUR, ReminderClinic, run_until, send_invites

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("now", "messaging", "twilio")]
TUESDAY = MONDAY + timedelta(days=1)
WEDNESDAYS, FRIDAYS = (
    at(MONDAY + timedelta(days=2), "15:00"),
    at(MONDAY + timedelta(days=4), "10:00"),
)
FIRST = FRIDAYS - 72 * HOUR  # Tuesday 10:00
SECOND = WEDNESDAYS - 24 * HOUR  # Tuesday 15:00


@pytest.fixture
def clinic(db):
    return ReminderClinic()


@pytest.fixture
def patient(clinic, now, twilio_server) -> Patient:
    """A patient with express consent and two reminders on Tuesday, at 10:00 and at 15:00."""
    patient = clinic.texting_patient(
        contact_by_email=False,
        sms_express_consent_at=CONSENTED_AT,
        sms_express_consent_method=ConsentMethod.WEB_FORM,
    )
    clinic.book(patient, clinic.screening, FRIDAYS)
    clinic.book(patient, clinic.screening, WEDNESDAYS)
    send_invites(now)
    run_until(now, FIRST - timedelta(minutes=1))  # Sunday's reminder went on Sunday
    twilio_server.reset()  # what the test sends is its own
    return patient


def tuesdays(patient: Patient) -> list[Message]:
    """The two reminders due on Tuesday: 72 h before Friday's visit, 24 h before Wednesday's."""
    return [
        Message.objects.get(
            patient=patient, channel=Channel.SMS, visit__start=start, rule__offset=offset
        )
        for start, offset in ((FRIDAYS, 72 * HOUR), (WEDNESDAYS, 24 * HOUR))
    ]


def assert_one_text_for_both(patient: Patient, twilio, status: str = Status.QUEUED) -> None:
    first, second = tuesdays(patient)
    [text] = [t for t in twilio.sent_to(patient.mobile) if t["sid"] == first.provider_id]
    assert (first.status, second.status) == (status, status)
    assert (first.combined_into, second.combined_into) == (None, first)
    assert second.provider_id == first.provider_id and second.body == first.body == text["body"]
    assert "on Wed Jun 5 at 3:00 PM and Fri Jun 7 at 10:00 AM" in text["body"]


def test_the_first_text_of_the_day_carries_the_later_one(patient, now, twilio):
    now.move_to(FIRST)
    result = dispatch()
    assert (result.sent, result.combined) == (1, 1)
    assert_one_text_for_both(patient, twilio)
    now.move_to(SECOND)
    assert dispatch().sent == 0
    assert len(twilio.creates()) == 1


def test_a_dispatcher_that_dies_after_handing_over_a_combined_text_leaves_it_sent_once(
    patient, now, twilio
):
    now.move_to(FIRST)
    dying = Dispatcher()
    batch = dying.claim(10)
    batch.prepare()
    batch.mark()
    [(_, outgoing)] = batch.sending
    dying.transport(Channel.SMS).send(outgoing)  # ... and the process dies here
    first, second = tuesdays(patient)
    assert (first.in_doubt, second.in_doubt, second.combined_into) == (True, True, first)

    # Past the lease, and the later reminder's own time: it waits for its text's lookup.
    now.move_to(SECOND)
    result = dispatch()

    assert (result.recovered, result.sent, result.combined) == (2, 1, 1)
    assert_one_text_for_both(patient, twilio)
    assert len(twilio.creates()) == 1
    assert not Message.objects.filter(in_doubt=True).exists()


def test_a_timeout_on_a_combined_text_is_looked_up_and_none_of_it_goes_twice(
    patient, now, twilio, settings
):
    settings.TWILIO_TIMEOUT = 1
    twilio.fail_next(Failure(delay=1.5, create=True))  # Twilio took it; the answer got lost
    now.move_to(FIRST)
    dispatch()
    first, second = tuesdays(patient)
    assert (first.status, first.in_doubt) == (Status.PENDING, True)
    assert (second.status, second.in_doubt, second.combined_into) == (Status.PENDING, True, first)

    now.move_to(first.send_at)
    result = dispatch()

    assert (result.sent, result.combined) == (1, 1)
    assert_one_text_for_both(patient, twilio)
    assert [r["method"] for r in twilio.requests] == ["POST", "GET"]


def test_a_combined_text_twilio_refuses_for_now_goes_again_as_one(patient, now, twilio):
    twilio.fail_next(Failure(500))
    now.move_to(FIRST)
    dispatch()
    first, second = tuesdays(patient)
    assert (first.status, first.send_at, first.in_doubt) == (
        Status.PENDING,
        FIRST + timedelta(minutes=1),
        False,
    )
    # Free again, at its own time: the retry takes it along if it is still to come.
    assert (second.status, second.send_at, second.combined_into) == (Status.PENDING, SECOND, None)

    now.move_to(first.send_at)
    result = dispatch()

    assert (result.sent, result.combined) == (1, 1)
    assert_one_text_for_both(patient, twilio)
    assert len(twilio.creates()) == 2 and len(twilio.messages) == 1


def test_each_delivery_report_of_a_combined_text_reaches_every_message_in_it(
    patient, now, twilio, client
):
    now.move_to(FIRST)
    dispatch()
    [text] = twilio.messages
    # A report that comes before our record of the SID finds them by our id (?m=).
    Message.objects.filter(provider_id=text["sid"]).update(provider_id="")
    assert twilio.callback(text, "sent", client=client) == 204
    assert_one_text_for_both(patient, twilio, Status.SENT)
    assert twilio.callback(text, "undelivered", error_code="30003", client=client) == 204
    assert_one_text_for_both(patient, twilio, Status.UNDELIVERED)
    for message in tuesdays(patient):
        assert message.needs_attention and "30003" in message.last_error


def test_a_combined_text_that_failed_goes_again_as_one_when_the_desk_retries(patient, now, twilio):
    twilio.invalid_numbers.add(patient.mobile)
    now.move_to(FIRST)
    dispatch()
    first, second = tuesdays(patient)
    assert (first.status, second.status, second.combined_into) == (
        Status.FAILED,
        Status.FAILED,
        first,
    )
    assert first.error_code == second.error_code == "21211"

    twilio.invalid_numbers.clear()  # the desk corrected the number
    now.move_to(FIRST + HOUR)
    assert Message.objects.needs_attention().retry_now() == 2
    result = dispatch()

    assert (result.sent, result.combined) == (1, 1)
    assert_one_text_for_both(patient, twilio)


def test_joining_the_days_texts_costs_a_few_queries_per_batch_whatever_its_size(
    clinic, now, twilio
):
    for i in range(20):
        patient = clinic.texting_patient(
            f"P{i}",
            contact_by_email=False,
            sms_express_consent_at=CONSENTED_AT,
            sms_express_consent_method=ConsentMethod.WEB_FORM,
        )
        therapist = clinic.clinician(f"Therapist {i}", "therapist")  # one each: no overlaps
        for start in (FRIDAYS, WEDNESDAYS):
            booking.book(
                patient=patient, visit_type=clinic.integration, clinician=therapist, start=start
            )
    send_invites(now)
    run_until(now, FIRST - timedelta(minutes=1))
    twilio.reset()
    now.move_to(FIRST)  # each patient's 72 h reminder is due; the 24 h one comes at 15:00

    with CaptureQueriesContext(connection) as queries:
        result = dispatch()

    assert (result.sent, result.combined) == (20, 20)
    print(f"\n{len(queries)} queries for 20 texts carrying 40 reminders")
    assert len(queries) <= 20, "\n".join(q["sql"][:120] for q in queries.captured_queries)
    assert len(twilio.messages) == 20
