"""Twenty patients take the same freed time at once, half by a signed TAKE text and half by
the offer's link, each from its own thread and database connection: exactly one is booked,
everyone else is told the time is taken, and every offer ends with a final outcome."""

import pytest
from django.test import Client

from notifications.dispatch import dispatch
from scheduler.models import Visit, VisitStatus
from tests.races import race
from tests.waitlist_helpers import FRIDAY, SLOT, WaitlistClinic, cancel, link_in
from waitlist.models import FINAL_OUTCOMES, FreedSlot, Offer, Outcome, SlotStatus
from waitlist.offers import offer_freed_times
from waitlist.taking import TAKEN

RACERS = 20


def reply_of(twiml: str) -> str:
    start = twiml.find("<Message>")
    return twiml[start + len("<Message>") : twiml.find("</Message>")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("messaging")
def test_twenty_takers_of_one_time_book_it_once_and_the_rest_hear_it_is_taken(
    now, twilio, settings
):
    now.move_to(FRIDAY)
    settings.WAITLIST_OFFERS_AT_ONCE = RACERS
    clinic = WaitlistClinic()
    patients = [clinic.waiting(f"Racer{i:02d}").patient for i in range(RACERS)]
    cancel(clinic.dosing_visit())
    assert offer_freed_times()["offered"] == RACERS
    dispatch()
    links = {p.pk: link_in(twilio.sent_to(p.mobile)[0]["body"]) for p in patients}

    def by_text(patient):
        status, twiml = twilio.text_from(patient.mobile, "TAKE", client=Client())
        assert status == 200
        return reply_of(twiml)

    def by_link(patient):
        page = Client().post(links[patient.pk], {"action": "take"})
        assert page.status_code == 200
        return "is yours" if "is yours" in page.text else TAKEN if TAKEN in page.text else page.text

    takers = [
        (lambda p=p: by_text(p)) if i % 2 else (lambda p=p: by_link(p))
        for i, p in enumerate(patients)
    ]
    answers = race(takers)

    assert not [a for a in answers if isinstance(a, Exception)], answers
    winners = [a for a in answers if "is yours" in a]
    assert len(winners) == 1, answers
    assert answers.count(TAKEN) == RACERS - 1, answers
    booked = Visit.objects.filter(start=SLOT, status=VisitStatus.BOOKED)
    assert booked.count() == 1
    offers = Offer.objects.all()
    assert offers.count() == RACERS
    assert all(offer.outcome in FINAL_OUTCOMES for offer in offers)
    [taken] = offers.filter(outcome=Outcome.TAKEN)
    assert taken.visit == booked.get() and taken.patient == booked.get().patient
    assert offers.filter(outcome=Outcome.TOO_LATE).count() == RACERS - 1
    assert FreedSlot.objects.get().status == SlotStatus.TAKEN
