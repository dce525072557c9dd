"""Freed times and the offers that fill them from the waitlist.

- Freeing: ``on_visit_saved`` (``scheduler.booking.visit_saved``, inside the
  transaction that cancels or moves a visit) records the time given up as a
  ``FreedSlot``, so it commits or rolls back with the change; ``on_visit_changed``
  (after commit) queues ``offer_freed_times`` on the worker.
- Offering (``offer_freed_times``, queued on every freed time and scheduled every
  few minutes): for each freed time still useful, expire the offers whose time
  is up, then offer it to the next eligible entries in the clinic's order until
  ``WAITLIST_OFFERS_AT_ONCE`` offers are open. An offer is a text and an email
  in the outbox (``notifications``), so quiet hours, consent and the text limits
  hold as for any other message.
- Eligible: the visit type (or the care plan step's) is the freed time's, the
  time is in the entry's window and preferences, the patient can be reached
  before the time is near, and booking them there (or moving the visit they give
  up there) breaks none of the booking rules nor their care plan's timing:
  ``booking.problems_for`` and ``booking.rule_problems``, as ``book`` and ``move``
  check, and ``care_plans.window_rules`` for a planned visit.
"""

from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from notifications.content import Composer, Email, sms_clinic_name, when_text
from notifications.models import PRIORITY, Message, Purpose
from notifications.planning import contact_channels
from notifications.rules import quiet_hours_for
from plans.care_plans import followers_moving, window_rules
from plans.models import PlannedVisit
from scheduler import booking
from scheduler.booking import Held, VisitChange
from scheduler.models import (
    OPEN_STATUSES,
    Clinician,
    Member,
    Visit,
    VisitStatus,
    WaitlistOrder,
)
from scheduler.phones import format_for_display
from waitlist.models import (
    EntryStatus,
    FreedSlot,
    Offer,
    Outcome,
    SlotStatus,
    WaitlistEntry,
)

FREEING_CHANGES = (VisitChange.CANCELLED, VisitChange.MOVED, VisitChange.NO_SHOW)
TASK = "waitlist.offers.offer_freed_times"
LINK_SALT = "waitlist.offer"


def min_notice() -> timedelta:
    return timedelta(minutes=settings.WAITLIST_MIN_NOTICE_MINUTES)


# -- freed times -------------------------------------------------------------------


def freed_time(visit: Visit, change: str, previous: Held | None) -> Held | None:
    """The time and place the change gave up, if it was worth offering; else None.

    ``previous`` is what the visit held before the change (``booking.Held``):
    a cancellation gives it up, a move too unless the visit kept its time
    (someone else on the team). A proposal held nothing, and a time too near
    to fill is not offered.
    """
    if change not in FREEING_CHANGES or previous is None:
        return None
    if previous.status not in (VisitStatus.BOOKED, VisitStatus.CONFIRMED):
        return None  # a proposal held no time
    if change == VisitChange.MOVED and previous.start == visit.start:
        return None  # someone else on the team, same time
    if previous.start <= timezone.now() + min_notice():
        return None  # too near to fill
    return previous


def on_visit_saved(sender, visit: Visit, change: str, previous=None, **kwargs) -> None:
    """Record the time ``visit`` gave up, in the transaction that gave it up."""
    freed = freed_time(visit, change, previous)
    if freed is None:
        return
    FreedSlot.objects.create(
        clinic_id=visit.visit_type.clinic_id,
        visit=visit,
        visit_sequence=visit.sequence,
        visit_type_id=visit.visit_type_id,
        clinician_id=freed.clinician_id,
        room_id=freed.room_id,
        staff=[p.clinician_id for p in visit.staff if not p.is_lead],
        start=freed.start,
        end=freed.end,
        change=change,
    )


def on_visit_changed(sender, visit: Visit, change: str, previous=None, **kwargs) -> None:
    """After the change committed: the worker makes the offers."""
    if freed_time(visit, change, previous) is not None:
        queue_offers()


def queue_offers() -> None:
    async_task(TASK, group="waitlist", task_name="waitlist-offers")


# -- who may be offered a freed time -------------------------------------------------


def slot_staff(slot: FreedSlot) -> list[Member]:
    staff = Clinician.objects.filter(pk__in=slot.staff)
    members, _, _ = booking.seat_staff(slot.visit_type, staff)
    return members


def candidate_visit(entry: WaitlistEntry, slot: FreedSlot) -> Visit:
    """The visit taking the offer would make: the one given up, moved there, or a new one."""
    given_up = entry.gives_up
    return Visit(
        pk=given_up.pk if given_up else None,
        patient=entry.patient,
        visit_type=slot.visit_type,
        clinician=slot.clinician,
        room=slot.room,
        start=slot.start,
        end=slot.end,
        status=VisitStatus.BOOKED,
    )


def plan_problems(visit: Visit, start: datetime, end: datetime) -> list[str]:
    """What the care plan of ``visit`` (if it is a planned visit) says against moving it there.

    Its own window (``care_plans.window_rules``), and the visits timed from it,
    which an offer does not move: none may be one that would have to move along
    (``care_plans.followers_moving``).
    """
    planned = (
        PlannedVisit.objects.select_related("visit", "step", "follows__visit", "follows__step")
        .filter(visit_id=visit.pk)
        .first()
    )
    if planned is None:
        return []
    problems = window_rules(planned, visit.clinic.tz)(start)
    problems += [
        _("%(step)s must start %(gap)s after this visit.")
        % {"step": follower.step, "gap": follower.step.gap_text}
        for follower, _moving in followers_moving(planned, start)
    ]
    return problems


def offer_problems(entry: WaitlistEntry, slot: FreedSlot, staff: list[Member]) -> list[str]:
    """Every reason ``entry``'s patient may not have ``slot`` (whose team after the lead is
    ``staff``, from ``slot_staff``); none: they may be offered it."""
    if entry.wanted_type.pk != slot.visit_type_id:
        return [f"The freed time is for {slot.visit_type}, not {entry.wanted_type}."]
    if not entry.fits(slot.start):
        return ["The time is outside the patient's dates, weekdays or times of day."]
    if entry.gives_up_id and entry.gives_up.status not in OPEN_STATUSES:
        return ["The visit to give up is no longer booked."]
    visit = candidate_visit(entry, slot)
    problems = booking.problems_for(visit, staff) + booking.rule_problems(visit)
    if entry.gives_up_id:
        problems += plan_problems(entry.gives_up, slot.start, slot.end)
    return problems


def in_order(entries, clinic):
    if clinic.waitlist_order == WaitlistOrder.PRIORITY:
        return entries.order_by("-priority", "created_at", "pk")
    return entries.order_by("created_at", "pk")


def waiting_for(slot: FreedSlot):
    """The entries that want the slot's kind of visit, in the clinic's order (not yet checked)."""
    entries = (
        # The slot's visit type is its clinic's: patients of other clinics waiting
        # for a visit here are asked too.
        WaitlistEntry.objects.waiting()
        .filter(Q(visit_type_id=slot.visit_type_id) | Q(step__visit_type_id=slot.visit_type_id))
        .exclude(patient_id=slot.visit.patient_id)
        .exclude(patient__in=Offer.objects.filter(slot=slot).values("patient"))
        .select_related("patient__clinic", "visit_type", "step__visit_type", "gives_up")
    )
    return in_order(entries, slot.clinic)


# -- making offers ------------------------------------------------------------------


def offer_freed_times(now: datetime | None = None) -> dict[str, int]:
    """The worker's task: expire offers whose time is up and make the next ones; counts."""
    now = now or timezone.now()
    counts = Counter()
    slots = FreedSlot.objects.filter(status__in=(SlotStatus.OPEN, SlotStatus.UNFILLED))
    for slot_id in slots.values_list("pk", flat=True):
        counts.update(offer_slot(slot_id, now))
    return dict(counts)


def offer_slot(slot_id: int, now: datetime) -> Counter:
    """Bring one freed time's offers up to date (see the module docstring)."""
    counts = Counter()
    with transaction.atomic():
        slot = (
            FreedSlot.objects.select_for_update(of=("self",))
            .select_related("clinic", "visit", "visit_type", "clinician", "room")
            .get(pk=slot_id)
        )
        if slot.status == SlotStatus.TAKEN:
            return counts
        offers = Offer.objects.filter(slot=slot, outcome=Outcome.OPEN)
        last_call = slot.start - min_notice()
        counts["expired"] += offers.filter(expires_at__lte=now).update(
            outcome=Outcome.EXPIRED, note="Nobody answered in time."
        )
        if now >= last_call:
            counts["expired"] += offers.update(
                outcome=Outcome.EXPIRED, note="The time came too near."
            )
            slot.status = SlotStatus.UNFILLED
            slot.save(update_fields=["status"])
            return counts
        wanted = settings.WAITLIST_OFFERS_AT_ONCE - offers.count()
        made = 0
        if wanted > 0:
            staff = slot_staff(slot)
            for entry in waiting_for(slot):
                if made >= wanted:
                    break
                channels = contact_channels(entry.patient)
                send_at = quiet_hours_for(entry.patient).next_allowed(now)
                if not channels or send_at >= last_call or offer_problems(entry, slot, staff):
                    continue
                make_offer(slot, entry, channels, send_at, last_call)
                made += 1
        counts["offered"] += made
        slot.status = SlotStatus.OPEN if made or offers.exists() else SlotStatus.UNFILLED
        slot.save(update_fields=["status"])
    return counts


def make_offer(
    slot: FreedSlot, entry: WaitlistEntry, channels: list[str], send_at: datetime, last_call
) -> Offer:
    """An offer of ``slot`` to ``entry``'s patient, and its text and email in the outbox."""
    expires_at = min(send_at + timedelta(minutes=slot.clinic.waitlist_offer_minutes), last_call)
    offer = Offer.objects.create(
        slot=slot, entry=entry, patient=entry.patient, sent_at=send_at, expires_at=expires_at
    )
    messages = []
    for channel in channels:
        message = Message(
            visit=slot.visit,
            patient=entry.patient,
            purpose=Purpose.WAITLIST_OFFER,
            channel=channel,
            visit_sequence=slot.visit_sequence,
            send_at=send_at,
            expires_at=expires_at,
            priority=PRIORITY[Purpose.WAITLIST_OFFER],
        )
        message.recipient = message.current_address
        messages.append(message)
    Message.objects.bulk_create(messages)
    return offer


# -- what offers say ----------------------------------------------------------------


def offer_link(offer: Offer) -> str:
    """The offer's page: a signed token of its id, of use only while the offer is open."""
    token = signing.Signer(salt=LINK_SALT).sign(str(offer.pk))
    return f"{settings.SITE_URL}{reverse('waitlist_offer', args=[token])}"


def offer_for_link(token: str) -> Offer | None:
    try:
        pk = signing.Signer(salt=LINK_SALT).unsign(token)
    except signing.BadSignature:
        return None
    return (
        Offer.objects.select_related("slot__clinic", "patient__clinic").filter(pk=pk).first()
        if pk.isdigit()
        else None
    )


def offer_of(message: Message) -> Offer | None:
    return (
        Offer.objects.select_related("slot__clinic", "patient__clinic")
        .filter(
            slot__visit_id=message.visit_id,
            slot__visit_sequence=message.visit_sequence,
            patient_id=message.patient_id,
        )
        .first()
    )


def offer_context(offer: Offer) -> dict:
    """What an offer says, in any channel: never the visit type or the treatment."""
    patient, clinic = offer.patient, offer.slot.clinic
    return {
        "first_name": patient.first_name,
        "clinic": sms_clinic_name(clinic),
        "clinic_name": clinic.name,
        "phone": format_for_display(clinic.phone),
        "when": when_text(offer.slot.start, patient.time_zone, clinic.time_zone),
        "until": when_text(offer.expires_at, patient.time_zone, clinic.time_zone),
        "link": offer_link(offer),
    }


def sms_text(message: Message) -> str:
    return render_to_string("waitlist/offer_sms.txt", offer_context(offer_of(message)))


def email(message: Message) -> Email:
    context = offer_context(offer_of(message))
    return Email(
        subject=_("An appointment time has opened up: %(when)s") % {"when": context["when"]},
        text=render_to_string("waitlist/offer_email.txt", context).strip() + "\n",
        html=render_to_string("waitlist/offer_email.html", context),
    )


def refusal(message: Message) -> str:
    offer = offer_of(message)
    if offer is None:
        return "The offer is gone."
    if offer.outcome != Outcome.OPEN:
        return f"The offer is closed: {offer.get_outcome_display().lower()}."
    if offer.entry.status != EntryStatus.WAITING:
        return "The patient is no longer on the waitlist for this."
    return ""


composer = Composer(sms=sms_text, email=email, refusal=refusal)
