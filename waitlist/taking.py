"""Taking an offer: the first to answer is booked, everyone after is told the time is taken.

``take`` is the one way in, from a TAKE text (``on_take_reply``, registered with
the Twilio webhook) and from the offer's page. It locks the freed time's row
first, so takers queue there (SQLite's IMMEDIATE transaction does the same),
then books through ``scheduler.booking`` (every rule checked again; a visit the
entry gives up is moved there instead, in the same transaction). The winner's
transaction closes every other open offer of the time as too late, so no offer
is left open once the time is taken.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from notifications.content import when_text
from notifications.models import InboundMessage
from scheduler import booking
from scheduler.booking import BookingError, SlotTaken
from scheduler.models import Clinician, Patient, Visit
from scheduler.phones import format_for_display
from waitlist.models import EntryStatus, FreedSlot, Offer, Outcome, SlotStatus
from waitlist.offers import plan_problems, queue_offers

# Marked here, translated where they are given (``_(TAKEN)``): in the patient's
# language, whichever way they answered (text or the offer's page).
TAKEN = gettext_noop("That time has been taken; you stay on the list.")
EXPIRED = gettext_noop("That offer has expired; you stay on the list.")
DECLINED = gettext_noop("You turned that time down; you stay on the list.")


@dataclass(frozen=True)
class Answer:
    text: str
    visit: Visit | None = None

    @property
    def booked(self) -> bool:
        return self.visit is not None


def _close(offer: Offer, outcome: str, now: datetime, via: str, note: str = "") -> None:
    if offer.outcome == Outcome.OPEN:
        offer.outcome, offer.answered_at, offer.answered_by = outcome, now, via
        offer.note = note[:300]
        offer.save(update_fields=["outcome", "answered_at", "answered_by", "note"])


def _book(offer: Offer, slot: FreedSlot) -> Visit:
    entry = offer.entry
    staff = list(Clinician.objects.filter(pk__in=slot.staff))
    if entry.gives_up_id:
        given_up = Visit.objects.select_related("patient__clinic", "visit_type__clinic").get(
            pk=entry.gives_up_id
        )
        if problems := plan_problems(given_up, slot.start, slot.end):
            raise BookingError(problems)
        return booking.move(
            given_up, start=slot.start, clinician=slot.clinician, room=slot.room, staff=staff
        )
    return booking.book(
        patient=offer.patient,
        visit_type=slot.visit_type,
        clinician=slot.clinician,
        start=slot.start,
        room=slot.room,
        staff=staff,
    )


def take(offer_id: int, via: str, *, now: datetime | None = None) -> Answer:
    """Book the offer's time for its patient if it is still theirs to take; the answer to give."""
    now = now or timezone.now()
    with transaction.atomic():
        slot_id = Offer.objects.filter(pk=offer_id).values_list("slot_id", flat=True).get()
        # Takers of one time queue here, one after the other.
        slot = (
            FreedSlot.objects.select_for_update(of=("self",))
            .select_related("clinic", "visit_type", "clinician", "room")
            .get(pk=slot_id)
        )
        offer = Offer.objects.select_related("patient__clinic", "entry").get(pk=offer_id)
        patient = offer.patient
        when = when_text(slot.start, patient.time_zone, slot.clinic.time_zone)
        if offer.outcome == Outcome.TAKEN:
            return Answer(_("The time on %(when)s is already yours.") % {"when": when}, offer.visit)
        if offer.outcome == Outcome.DECLINED:
            return Answer(_(DECLINED))
        if offer.outcome == Outcome.TOO_LATE or slot.status == SlotStatus.TAKEN:
            _close(offer, Outcome.TOO_LATE, now, via, "Someone else took it first.")
            return Answer(_(TAKEN))
        if offer.outcome == Outcome.EXPIRED or now >= offer.expires_at:
            _close(offer, Outcome.EXPIRED, now, via, "Answered after the offer ended.")
            return Answer(_(EXPIRED))
        try:
            with transaction.atomic():
                visit = _book(offer, slot)
        except BookingError as error:
            _close(offer, Outcome.TOO_LATE, now, via, f"Not booked: {error}")
            if isinstance(error, SlotTaken):
                return Answer(_(TAKEN))
            phone = format_for_display(slot.clinic.phone)
            return Answer(
                _(
                    "We could not book that time for you; you stay on the list. Questions: %(phone)s."
                )
                % {"phone": phone}
            )
        offer.outcome, offer.answered_at, offer.answered_by, offer.visit = (
            Outcome.TAKEN,
            now,
            via,
            visit,
        )
        offer.save(update_fields=["outcome", "answered_at", "answered_by", "visit"])
        Offer.objects.filter(slot=slot, outcome=Outcome.OPEN).update(
            outcome=Outcome.TOO_LATE, note="Someone else took it first."
        )
        slot.status, slot.taken_at = SlotStatus.TAKEN, now
        slot.save(update_fields=["status", "taken_at"])
        entry = offer.entry
        entry.status, entry.booked_visit = EntryStatus.BOOKED, visit
        entry.save(update_fields=["status", "booked_visit"])
    return Answer(
        _("Thank you, %(first_name)s: the time on %(when)s is yours.")
        % {"first_name": patient.first_name, "when": when},
        visit,
    )


def decline(offer_id: int, via: str = "link", *, now: datetime | None = None) -> Answer:
    """The patient does not want this time: the next on the list is asked."""
    now = now or timezone.now()
    with transaction.atomic():
        offer = Offer.objects.select_for_update().get(pk=offer_id)
        if offer.outcome != Outcome.OPEN:
            return Answer(_(TAKEN if offer.outcome == Outcome.TOO_LATE else DECLINED))
        _close(offer, Outcome.DECLINED, now, via)
        transaction.on_commit(queue_offers)
    return Answer(_("Thank you; you stay on the list and we will let you know of other times."))


def offer_answered_by_text(patients: list[Patient]) -> Offer | None:
    """The offer a TAKE from these patients' number answers: their latest open one, else their latest."""
    offers = Offer.objects.filter(patient__in=patients).order_by("-sent_at", "-pk")
    return offers.filter(outcome=Outcome.OPEN).first() or offers.first()


def on_take_reply(inbound: InboundMessage, patients: list[Patient], now: datetime) -> None:
    """A TAKE text (``notifications.webhooks.reply_handlers``): take the offer it answers."""
    offer = offer_answered_by_text(patients)
    if offer is None:
        clinic = patients[0].clinic
        inbound.needs_attention = True
        inbound.outcome = "TAKE, but no waitlist offer was made to this number."
        inbound.reply = _("We found no offer for this number. Questions: %(phone)s.") % {
            "phone": format_for_display(clinic.phone)
        }
        return
    answer = take(offer.pk, "text", now=now)
    inbound.visit = answer.visit
    inbound.reply = answer.text
    inbound.outcome = (
        "Took a waitlist offer." if answer.booked else f"Waitlist offer: {answer.text}"
    )[:300]
