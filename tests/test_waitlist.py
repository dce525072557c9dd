"""The waitlist: a freed dosing time is offered by text and email to the eligible patients in
the clinic's order, the first TAKE (or press of the link's button) books it, later answers hear
that it is taken, and offers expire to the next in line. Real parts only: the twilio SDK
against the fake Twilio, a real SMTP server, signed webhooks."""

from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications.content import treatment_words
from notifications.dispatch import dispatch
from notifications.models import InboundKind, Message, Purpose, Status
from notifications.patient_links import issue_patient_link
from notifications.webhooks import (
    HELP_KEYWORDS,
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    classify,
)
from scheduler.models import Visit, VisitStatus, WaitlistOrder
from tests.conftest import MONDAY, at
from tests.page_helpers import front_desk
from tests.waitlist_helpers import FRIDAY, SLOT, WaitlistClinic, cancel, link_in
from waitlist.models import (
    EntryStatus,
    FreedSlot,
    Offer,
    Outcome,
    Priority,
    SlotStatus,
    WaitlistEntry,
)
from waitlist.offers import offer_freed_times
from waitlist.taking import TAKEN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("messaging", "twilio", "smtp")]
INBOUND_URL = "https://clinic.example.org/webhooks/twilio/inbound"


@pytest.fixture
def clock(now):
    now.move_to(FRIDAY)
    return now


@pytest.fixture
def clinic(db, clock):
    return WaitlistClinic()


def reply_of(twiml: str) -> str:
    start = twiml.find("<Message>")
    return twiml[start + len("<Message>") : twiml.find("</Message>")] if start >= 0 else ""


def offers_by_patient() -> dict[str, str]:
    return {o.patient.first_name: o.outcome for o in Offer.objects.select_related("patient")}


def test_a_cancelled_dosing_visit_is_offered_to_the_first_three_by_text_and_email_and_the_first_take_books_it(
    clinic, twilio, smtp, client
):
    entries = [clinic.waiting(name) for name in ("Ada", "Ben", "Cy", "Dee")]
    visit = clinic.dosing_visit()
    cancel(visit)

    [slot] = FreedSlot.objects.all()
    assert (slot.start, slot.visit_type, slot.clinician, slot.room) == (
        SLOT,
        clinic.iv,
        clinic.prescriber,
        clinic.room1,
    )
    assert offer_freed_times() == {"expired": 0, "offered": 3}
    assert set(offers_by_patient()) == {"Ada", "Ben", "Cy"}  # first come, three at once
    dispatch()

    ada, ben, cy, dee = (entry.patient for entry in entries)
    [text] = twilio.sent_to(ada.mobile)
    body = text["body"]
    assert "Reply TAKE to take it" in body and "YES" not in body
    assert "Mon Jun 3 at 10:00 AM" in body and "Ada" in body
    assert treatment_words(body) == [] and "infusion" not in body.lower()
    [email] = smtp.to(ada.email)
    assert "appointment time has opened up" in email["Subject"]
    assert treatment_words(email.get_body(("plain",)).get_content()) == []
    assert twilio.sent_to(dee.mobile) == []

    status, twiml = twilio.text_from(ben.mobile, "TAKE", client=client)
    assert status == 200
    assert "the time on Mon Jun 3 at 10:00 AM is yours" in reply_of(twiml)
    booked = Visit.objects.get(patient=ben, start=SLOT)
    assert booked.status == VisitStatus.BOOKED and booked.visit_type == clinic.iv
    assert reply_of(twilio.text_from(ada.mobile, "take", client=client)[1]) == TAKEN

    # The link says so too, and the button books nothing.
    page = client.get(link_in(twilio.sent_to(cy.mobile)[0]["body"]))
    assert page.status_code == 200 and TAKEN in page.text
    assert treatment_words(page.text.split("<main")[-1]) == []
    assert TAKEN in client.post(link_in(body), {"action": "take"}).text

    assert offers_by_patient() == {
        "Ada": Outcome.TOO_LATE,
        "Ben": Outcome.TAKEN,
        "Cy": Outcome.TOO_LATE,
    }
    slot.refresh_from_db()
    assert slot.status == SlotStatus.TAKEN
    assert WaitlistEntry.objects.get(patient=ben).status == EntryStatus.BOOKED
    assert Visit.objects.filter(start=SLOT, status=VisitStatus.BOOKED).count() == 1


def test_taking_by_the_link_books_it_and_unanswered_offers_of_the_time_are_closed(
    clinic, twilio, client
):
    ada = clinic.waiting("Ada").patient
    clinic.waiting("Ben")
    cancel(clinic.dosing_visit())
    offer_freed_times()
    dispatch()

    url = link_in(twilio.sent_to(ada.mobile)[0]["body"])
    page = client.get(url)
    assert "Take this time" in page.text and "Mon Jun 3 at 10:00 AM" in page.text
    answer = client.post(url, {"action": "take"})
    assert "is yours" in answer.text
    assert Visit.objects.get(start=SLOT, status=VisitStatus.BOOKED).patient == ada
    assert offers_by_patient() == {"Ada": Outcome.TAKEN, "Ben": Outcome.TOO_LATE}
    # An answer that is neither take nor decline is refused.
    assert client.post(url, {"action": "nonsense"}).status_code == 400


def test_no_thanks_on_the_link_passes_the_time_to_the_next_in_line(clinic, twilio, settings):
    settings.WAITLIST_OFFERS_AT_ONCE = 1
    ada = clinic.waiting("Ada").patient
    clinic.waiting("Ben")
    cancel(clinic.dosing_visit())
    offer_freed_times()
    dispatch()
    url = link_in(twilio.sent_to(ada.mobile)[0]["body"])
    assert "stay on the list" in Client().post(url, {"action": "decline"}).text
    assert offers_by_patient() == {"Ada": Outcome.DECLINED}
    offer_freed_times()
    assert offers_by_patient() == {"Ada": Outcome.DECLINED, "Ben": Outcome.OPEN}
    # Declined is final: taking afterwards books nothing.
    assert "turned that time down" in Client().post(url, {"action": "take"}).text
    assert not Visit.objects.filter(patient=ada).exists()


def test_offers_expire_and_the_next_in_line_is_asked(clinic, clock, twilio, settings):
    settings.WAITLIST_OFFERS_AT_ONCE = 1
    ada, ben = (clinic.waiting(name).patient for name in ("Ada", "Ben"))
    cancel(clinic.dosing_visit())
    offer_freed_times()
    assert offers_by_patient() == {"Ada": Outcome.OPEN}
    offer = Offer.objects.get()
    assert offer.expires_at == FRIDAY + timedelta(minutes=clinic.clinic.waitlist_offer_minutes)

    clock.move_to(offer.expires_at)
    assert offer_freed_times() == {"expired": 1, "offered": 1}
    assert offers_by_patient() == {"Ada": Outcome.EXPIRED, "Ben": Outcome.OPEN}
    reply = reply_of(twilio.text_from(ada.mobile, "TAKE", client=Client())[1])
    assert reply == "That offer has expired; you stay on the list."
    assert not Visit.objects.filter(patient=ada).exists()
    assert Visit.objects.filter(patient=ben).count() == 0


def test_only_patients_whom_the_time_fits_and_whose_rules_allow_it_are_offered(clinic, settings):
    settings.WAITLIST_OFFERS_AT_ONCE = 10
    clinic.clinic.waitlist_order = WaitlistOrder.PRIORITY
    clinic.clinic.save()
    clinic.waiting("Late", earliest=date(2030, 6, 10))  # window starts after the time
    clinic.waiting("Fridays", weekdays=[4])
    clinic.waiting("Evenings", times_of_day=["evening"])
    spaced = clinic.waiting("Dosed")  # has a dose the next morning: spacing would break
    clinic.dosing_visit(spaced.patient, at(MONDAY + timedelta(days=1), "08:00"))
    unscreened = clinic.waiting("Unscreened")
    unscreened.patient.screenings.all().delete()
    clinic.waiting("First")
    clinic.waiting("Urgent", priority=Priority.URGENT)
    clinic.waiting("Mornings", times_of_day=["morning"], weekdays=[0])
    cancel(clinic.dosing_visit())

    offer_freed_times()
    offered = Offer.objects.order_by("pk").values_list("patient__first_name", flat=True)
    assert list(offered) == ["Urgent", "First", "Mornings"]


def test_giving_up_a_later_visit_moves_it_and_frees_its_old_time(clinic, twilio, client):
    entry = clinic.waiting("Mover")
    later = clinic.dosing_visit(entry.patient, at(MONDAY + timedelta(days=14), "10:00"))
    entry.gives_up = later
    entry.full_clean()
    entry.save()
    cancel(clinic.dosing_visit())
    offer_freed_times()
    dispatch()

    reply = reply_of(twilio.text_from(entry.patient.mobile, "TAKE", client=client)[1])
    assert "is yours" in reply
    later.refresh_from_db()
    assert later.start == SLOT and later.status == VisitStatus.BOOKED
    assert Visit.objects.filter(patient=entry.patient).count() == 1
    # Its old time is free now, for the next on the list.
    assert FreedSlot.objects.filter(start=at(MONDAY + timedelta(days=14), "10:00")).exists()


def test_a_forged_take_is_refused_and_books_nothing(clinic, twilio, client):
    ada = clinic.waiting("Ada").patient
    cancel(clinic.dosing_visit())
    offer_freed_times()
    params = {"MessageSid": "SMforged", "From": ada.mobile, "Body": "TAKE"}
    assert twilio.post_signed(INBOUND_URL, params, client=client, signature="bm90IGl0")[0] == 403
    assert not Visit.objects.filter(patient=ada).exists()
    assert Offer.objects.get().outcome == Outcome.OPEN


def test_take_is_no_carrier_keyword_and_any_case_counts():
    for keyword in ("TAKE", "take", "Take."):
        assert classify(keyword) == (InboundKind.TAKE, False)
    assert "TAKE" not in OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS


def test_a_take_without_any_offer_is_answered_and_kept_for_the_desk(clinic, twilio, client):
    patient = clinic.texting_patient("Nobody")
    reply = reply_of(twilio.text_from(patient.mobile, "TAKE", client=client)[1])
    assert reply.startswith("We found no offer for this number.")


def test_a_time_freed_at_night_is_offered_when_quiet_hours_end(clinic, clock, twilio):
    clinic.waiting("Ada")
    visit = clinic.dosing_visit()
    clock.move_to(at(MONDAY - timedelta(days=3), "22:30"))
    cancel(visit)
    offer_freed_times()
    offer = Offer.objects.get()
    assert offer.sent_at == at(MONDAY - timedelta(days=2), "08:00")
    dispatch()
    assert not Message.objects.filter(
        purpose=Purpose.WAITLIST_OFFER, status__in=(Status.QUEUED, Status.SENT)
    ).exists()


def test_the_desk_lists_adds_and_filters_entries_and_today_counts_untaken_times(clinic):
    desk = Client()
    desk.force_login(front_desk())
    ada = clinic.waiting("Ada")
    cancel(clinic.dosing_visit())
    offer_freed_times()

    page = desk.get(reverse("desk_waitlist")).text
    assert "Ada Waiting</a>: Iv Infusion" in page and "<td>Open</td>" in page
    today = desk.get(reverse("desk_today")).text
    assert "1 freed time in the next 72 h with no taker" in today
    assert reverse("desk_waitlist") in today

    bob = clinic.texting_patient("Bob", "Added")
    form = {
        "patient": bob.pk,
        "visit_type": clinic.iv.pk,
        "earliest": "2030-06-20",
        "latest": "2030-06-10",
        "priority": "2",
    }
    refused = desk.post(reverse("desk_waitlist"), form)
    assert refused.status_code == 200
    assert "The latest date comes on or after the earliest." in refused.text
    assert not WaitlistEntry.objects.filter(patient=bob).exists()
    form["latest"] = "2030-06-30"
    assert desk.post(reverse("desk_waitlist"), form).status_code == 302
    assert WaitlistEntry.objects.get(patient=bob).priority == Priority.URGENT

    waiting_page = desk.get(reverse("desk_waitlist"), {"status": "booked"}).text
    assert "Ada Waiting</a>" not in waiting_page
    desk.post(reverse("desk_waitlist"), {"action": "remove", "entry": ada.pk})
    assert WaitlistEntry.objects.get(pk=ada.pk).status == EntryStatus.REMOVED


def test_a_patient_joins_the_waitlist_from_their_page(clinic):
    patient = clinic.texting_patient("Pat", "Page")
    later = clinic.dosing_visit(patient, at(MONDAY + timedelta(days=14), "10:00"))
    url = issue_patient_link(patient).removeprefix("https://clinic.example.org")
    page = Client().get(url)
    join = reverse("patient_waitlist", args=[url.split("/")[2]])
    assert join in page.text
    form = Client().get(join).text
    assert "Infusion" not in form and "Iv " not in form
    bad = Client().post(join, {"visit": later.pk, "earliest": "2030-06-01", "latest": "2030-06-20"})
    assert "before the visit you have" in bad.text
    done = Client().post(
        join, {"visit": later.pk, "earliest": "2030-06-01", "latest": "2030-06-16"}
    )
    assert done.status_code == 302
    entry = WaitlistEntry.objects.get(patient=patient)
    assert (entry.gives_up, entry.visit_type, entry.added_by_patient) == (later, clinic.iv, True)
    assert Client().get(join.replace(url.split("/")[2], "x" * 43)).status_code == 404


def test_a_patient_the_desk_put_on_the_waitlist_for_a_visit_type_may_still_join_for_a_visit(
    clinic,
):
    patient = clinic.texting_patient("Desk", "Made")
    later = clinic.dosing_visit(patient, at(MONDAY + timedelta(days=14), "10:00"))
    # The desk's entry waits for a visit type, giving up no visit (gives_up is NULL).
    WaitlistEntry.objects.create(
        patient=patient,
        visit_type=clinic.iv,
        earliest=MONDAY,
        latest=MONDAY + timedelta(days=10),
    )
    url = issue_patient_link(patient).removeprefix("https://clinic.example.org")
    join = reverse("patient_waitlist", args=[url.split("/")[2]])
    page = Client().get(join).text
    assert f'<option value="{later.pk}"' in page  # not hidden by the NULL
    assert f"a {clinic.iv} visit (from" in page and "your visit on  (" not in page

    # In Spanish too, the date picker is given its ISO date (it shows nothing for "03/06/2030").
    patient.language = "es"
    patient.save(update_fields=["language"])
    page = Client().get(join).text
    tomorrow = timezone.localdate(timezone=clinic.clinic.tz) + timedelta(days=1)
    assert f'name="earliest" value="{tomorrow.isoformat()}"' in page


def test_cancelling_the_demo_dose_offers_its_time_to_the_waiting_demo_patients(now):
    call_command("seed_demo", stdout=StringIO())
    assert WaitlistEntry.objects.waiting().count() == 3
    dose = Visit.objects.get(visit_type__slug="iv-infusion", status=VisitStatus.BOOKED)
    cancel(dose)
    assert offer_freed_times()["offered"] >= 1
    first = Offer.objects.order_by("pk").first()
    assert first.patient.first_name in {"Avery", "Blake", "Dana"}
    assert Message.objects.filter(
        purpose=Purpose.WAITLIST_OFFER, patient=first.patient, channel="sms"
    ).exists()


def _queries(client, url) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


# Measured: the session, the user and their roles, then the page: the clinic, the
# form's lists, the filters' lists, the entries, their offers with their times, the
# freed times; the same however many entries and offers there are.
WAITLIST_PAGE_QUERIES = 12


def test_the_waitlist_page_and_today_run_a_fixed_number_of_queries(clinic):
    desk = Client()
    desk.force_login(front_desk())
    counts = {"waitlist": [], "today": []}
    for n in (2, 6):
        while WaitlistEntry.objects.count() < n:
            k = WaitlistEntry.objects.count()
            entry = clinic.waiting(f"Crowd{k}")
            visit = clinic.dosing_visit(
                clinic.patient(f"Holder{entry.pk}"),
                at(MONDAY + timedelta(days=k // 5), f"{8 + 2 * (k % 5):02d}:00"),
            )
            cancel(visit)
        offer_freed_times()
        desk.get(reverse("desk_today"))  # the first page after signing in refreshes the session
        counts["waitlist"].append(_queries(desk, reverse("desk_waitlist")))
        counts["today"].append(_queries(desk, reverse("desk_today")))
    assert Offer.objects.count() > 2
    assert counts["waitlist"][0] == counts["waitlist"][1] <= WAITLIST_PAGE_QUERIES, counts
    assert counts["today"][0] == counts["today"][1], counts
