"""Patients move and cancel their own visits from their page, within the protocol's and the clinic's rules."""

from datetime import date, datetime, timedelta
from urllib.parse import quote

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from desk import self_service
from notifications.models import Message, Purpose
from notifications.patient_links import issue_patient_link
from plans.care_plans import confirm, save_proposal, window_rules
from plans.generator import generate
from plans.models import PlannedVisit, Protocol
from scheduler import booking
from scheduler.audit import PATIENT_LINK
from scheduler.models import (
    AuditAction,
    AuditEvent,
    Clinic,
    Patient,
    TranslatedPolicy,
    Visit,
    VisitStatus,
)
from tests.language_helpers import english_left, untranslated
from tests.page_helpers import front_desk, sign_in_verified

pytestmark = pytest.mark.usefixtures("now")
START = date(2030, 2, 4)  # a Monday, after the demo's own visits


@pytest.fixture
def demo(demo_seeded, db, now):
    return Clinic.objects.get(slug="riverside")


@pytest.fixture
def plan(demo):
    """A lozenge course for a screened demo patient, booked: doses, each with integrations after it."""
    patient = Patient.objects.filter(clinic=demo, screenings__cleared=True).order_by("pk").first()
    protocol = Protocol.objects.get(clinic=demo, slug="kap-lozenge")
    return confirm(save_proposal(generate(patient, protocol, START)))


def _token(patient) -> str:
    return issue_patient_link(patient).rstrip("/").rsplit("/", 1)[1]


def _planned(plan, kind: str) -> PlannedVisit:
    return (
        plan.planned_visits.filter(step__visit_type__kind=kind)
        .select_related("visit", "step")
        .order_by("visit__start")
        .first()
    )


def _offered_starts(page: str) -> list[datetime]:
    """The times a move page links to, as instants."""
    starts = []
    for part in page.split('href="?start=')[1:]:
        text = part.split('"', 1)[0].replace("%3A", ":").replace("%2B", "+")
        starts.append(datetime.fromisoformat(text))
    return starts


def test_a_patient_moves_an_integration_to_an_offered_time_and_the_desk_sees_it(
    client, plan, settings
):
    integration = _planned(plan, "integration")
    visit, patient = integration.visit, integration.visit.patient
    token = _token(patient)
    page = client.get(reverse("patient_page", args=[token])).text
    move_url = reverse("patient_move", args=[token, visit.pk])
    assert move_url in page and reverse("patient_cancel", args=[token, visit.pk]) in page

    offered = _offered_starts(client.get(move_url).text)
    assert offered, "no time offered"
    rules = window_rules(integration, plan.patient.clinic.tz)
    soonest = timezone.now() + timedelta(hours=plan.patient.clinic.self_service_notice_hours)
    for start in offered:  # every time offered keeps the step's window and the notice
        assert rules(start) == [] and start >= soonest

    choice = next(start for start in offered if start != visit.start)
    review = client.get(move_url + "?start=" + quote(choice.isoformat()))
    assert review.status_code == 200 and "Move my visit" in review.text
    done = client.post(move_url, {"start": choice.isoformat()}, follow=True)
    assert "Your visit is moved to" in done.text

    visit.refresh_from_db()
    assert visit.start == choice and visit.status == VisitStatus.BOOKED
    assert visit.moves_by_patient == 1 and visit.changed_by_patient_at == timezone.now()
    # The usual "moved" notice to the patient, and the change in the audit trail as the link's.
    assert Message.objects.filter(visit=visit, purpose=Purpose.MOVED).exists()
    assert AuditEvent.objects.filter(
        action=AuditAction.CHANGED_VISIT,
        actor_label=PATIENT_LINK,
        detail=f"visit {visit.pk}: moved",
    ).exists()

    desk = front_desk()
    sign_in_verified(client, desk)
    today = client.get(reverse("desk_today")).text
    assert "changed by patients online, last 7 days (1)" in today
    assert reverse("desk_visit", args=[visit.pk]) in today
    assert "moved online 1 time" in client.get(reverse("desk_visit", args=[visit.pk])).text


def test_a_forged_move_to_a_time_outside_the_rules_is_refused_with_the_rule(client, plan):
    integration = _planned(plan, "integration")
    visit = integration.visit
    token = _token(visit.patient)
    move_url = reverse("patient_move", args=[token, visit.pk])
    anchor_end = integration.follows.visit.end

    # Outside the step's window after its dose: the window's words.
    too_late = anchor_end + integration.step.max_gap + timedelta(days=2)
    refused = client.post(move_url, {"start": too_late.isoformat()})
    assert refused.status_code == 409
    assert f"must start {integration.step.gap_text} after" in refused.text

    # Within the clinic's notice: its words.
    soon = timezone.now() + timedelta(hours=2)
    refused = client.post(move_url, {"start": soon.isoformat()})
    assert refused.status_code == 409 and "24 hours away cannot be chosen online" in refused.text

    # A time someone else holds: not free, without saying whose.
    other = (
        Visit.objects.blocking()
        .filter(clinician=visit.clinician, start__gt=visit.start)
        .exclude(patient=visit.patient)
        .order_by("start")
        .first()
    )
    if other is not None and integration.step.max_gap is not None:
        refused = client.post(move_url, {"start": other.start.isoformat()})
        assert refused.status_code == 409
        assert other.patient.first_name not in refused.text

    visit.refresh_from_db()
    assert visit.sequence == 0 and visit.moves_by_patient == 0


def test_a_spanish_reader_is_told_the_rule_a_chosen_time_breaks_in_spanish(client, plan):
    patient = plan.patient
    patient.language = "es"
    patient.save(update_fields=["language"])
    clinic = patient.clinic
    clinic.patients_move_dosing = True
    clinic.save(update_fields=["patients_move_dosing"])
    token = _token(patient)
    # The clinic's own words stay as it wrote them: names of steps, visit types, people.
    own_words = [
        *(str(step) for step in plan.protocol.steps.all()),
        *(str(p.visit.visit_type) for p in plan.planned_visits.select_related("visit")),
        *(str(p.visit.clinician) for p in plan.planned_visits.select_related("visit")),
        str(plan.protocol),
        clinic.name,
        str(patient),
    ]

    integration = _planned(plan, "integration")
    too_late = integration.follows.visit.end + integration.step.max_gap + timedelta(days=2)
    move_url = reverse("patient_move", args=[token, integration.visit.pk])
    refused = client.post(move_url, {"start": too_late.isoformat()})
    assert refused.status_code == 409
    assert f"debe empezar {integration.step.gap_text} después de" not in refused.text  # not English
    with translation.override("es"):
        gap = integration.step.gap_text
    assert gap.startswith("de ") and f"debe empezar {gap} después de" in refused.text
    assert english_left(refused.text, *own_words) == []

    # A dose moved onto the next one's day: the spacing of the step's doses, in Spanish.
    dose = _planned(plan, "dosing")
    later = (
        plan.planned_visits.filter(step=dose.step, visit__start__gt=dose.visit.start)
        .select_related("visit")
        .order_by("visit__start")
        .first()
    )
    move_url = reverse("patient_move", args=[token, dose.visit.pk])
    refused = client.post(move_url, {"start": (later.visit.start - timedelta(hours=2)).isoformat()})
    assert refused.status_code == 409 and "deben estar separadas por" in refused.text
    assert english_left(refused.text, *own_words) == []
    dose.visit.refresh_from_db()
    assert dose.visit.moves_by_patient == 0


def test_screening_and_dosing_are_not_the_patients_to_move_unless_the_clinic_says(client, plan):
    dose = _planned(plan, "dosing")
    visit, clinic = dose.visit, plan.patient.clinic
    token = _token(visit.patient)
    move_url = reverse("patient_move", args=[token, visit.pk])
    refused = client.get(move_url)
    assert refused.status_code == 409 and "The clinic changes" in refused.text
    assert move_url not in client.get(reverse("patient_page", args=[token])).text

    clinic.patients_move_dosing = True
    clinic.save(update_fields=["patients_move_dosing"])
    page = client.get(move_url)
    assert page.status_code == 200
    offered = _offered_starts(page.text)
    assert offered
    # Moving the dose moves the integration timed from it when its window would break.
    later = [s for s in offered if s > visit.start]
    along_any = False
    for start in later:
        offer, problems = self_service.offer_at(visit, start)
        assert offer is not None and problems == []
        along_any = along_any or bool(offer.along)
        if offer.along:
            review = client.get(move_url + "?start=" + quote(start.isoformat())).text
            assert "these visits move with it" in review
            client.post(move_url, {"start": start.isoformat()})
            for item in offer.along:
                item.visit.refresh_from_db()
                assert item.visit.start == item.start
            break
    # The first dose is followed by its integration a day or two later: a later time moves it.
    assert along_any

    screening = Visit.objects.filter(
        patient=visit.patient, visit_type__kind="screening", start__gt=timezone.now()
    ).first()
    if screening is not None:
        refused = client.get(reverse("patient_move", args=[token, screening.pk]))
        assert refused.status_code == 409


def test_the_clinics_limit_on_moves_and_its_notice_period_apply(client, plan, now):
    integration = _planned(plan, "integration")
    visit, clinic = integration.visit, plan.patient.clinic
    clinic.self_service_moves = 1
    clinic.save(update_fields=["self_service_moves"])
    token = _token(visit.patient)
    move_url = reverse("patient_move", args=[token, visit.pk])
    first = next(s for s in _offered_starts(client.get(move_url).text) if s != visit.start)
    client.post(move_url, {"start": first.isoformat()})
    visit.refresh_from_db()
    assert visit.start == first

    refused = client.get(move_url)
    assert refused.status_code == 409
    assert "moved online 1 time, the most the clinic allows" in refused.text
    assert client.post(move_url, {"start": visit.start.isoformat()}).status_code == 409

    # Within the notice period nothing changes online, not even a cancellation.
    now.move_to(visit.start - timedelta(hours=3))
    cancel_url = reverse("patient_cancel", args=[token, visit.pk])
    refused = client.post(cancel_url)
    assert refused.status_code == 409 and "until 24 hours before" in refused.text
    visit.refresh_from_db()
    assert visit.status == VisitStatus.BOOKED


def test_a_spanish_reader_reads_the_cancellation_policy_in_spanish_or_the_desk_is_told(
    client, plan
):
    patient, clinic = plan.patient, plan.patient.clinic
    patient.language = "es"
    patient.save(update_fields=["language"])
    visit = _planned(plan, "integration").visit
    cancel_url = reverse("patient_cancel", args=[_token(patient), visit.pk])
    own_words = [str(visit.visit_type), str(visit.clinician), clinic.name]

    # The policy a clinic starts with: in our catalogue's Spanish.
    with untranslated() as missing:
        page = client.get(cancel_url).text
    assert missing == set()
    assert "Si cancela con menos de 48 horas" in page and english_left(page, *own_words) == []

    # Its own words, not yet in Spanish: the English, and the desk sees it is missing.
    clinic.late_cancellation_policy = "Cancel 72 hours ahead or pay the visit in full."
    clinic.save(update_fields=["late_cancellation_policy"])
    assert clinic.late_cancellation_policy in client.get(cancel_url).text
    desk = front_desk()
    desk_client = type(client)()
    sign_in_verified(desk_client, desk)
    patient_page = desk_client.get(reverse("desk_patient", args=[patient.pk])).text
    assert "no Español cancellation policy" in patient_page

    # Worded in Spanish by the clinic: that.
    TranslatedPolicy.objects.create(
        clinic=clinic, language="es", late_cancellation_policy="Cancele con 72 horas o pague."
    )
    page = client.get(cancel_url).text
    assert "Cancele con 72 horas o pague." in page and "Cancel 72 hours" not in page
    patient_page = desk_client.get(reverse("desk_patient", args=[patient.pk])).text
    assert "cancellation policy" not in patient_page


def test_cancelling_shows_the_policy_and_records_a_late_cancellation(client, plan, now):
    integrations = list(
        plan.planned_visits.filter(step__visit_type__kind="integration").order_by("visit__start")
    )
    early, late = integrations[0].visit, integrations[1].visit
    clinic = plan.patient.clinic
    token = _token(early.patient)

    page = client.get(reverse("patient_cancel", args=[token, early.pk]))
    assert clinic.late_cancellation_policy[:40] in page.text
    assert "This is a late cancellation" not in page.text
    done = client.post(reverse("patient_cancel", args=[token, early.pk]), follow=True)
    assert "Your visit is cancelled" in done.text
    early.refresh_from_db()
    assert early.status == VisitStatus.CANCELLED and not early.cancelled_late
    assert early.cancellation_reason == "Cancelled by the patient online"
    assert Message.objects.filter(visit=early, purpose=Purpose.CANCELLED).exists()

    now.move_to(late.start - timedelta(hours=30))  # past the 24 h notice, inside the 48 h policy
    page = client.get(reverse("patient_cancel", args=[token, late.pk]))
    assert "This is a late cancellation" in page.text
    client.post(reverse("patient_cancel", args=[token, late.pk]))
    late.refresh_from_db()
    assert late.status == VisitStatus.CANCELLED and late.cancelled_late
    assert late.changed_by_patient_at == timezone.now()


def test_another_patients_visit_cannot_be_moved_or_cancelled_from_a_link(client, plan, demo):
    visit = _planned(plan, "integration").visit
    other = Patient.objects.filter(clinic=demo).exclude(pk=visit.patient_id).first()
    token = _token(other)
    assert client.get(reverse("patient_move", args=[token, visit.pk])).status_code == 404
    assert client.post(reverse("patient_cancel", args=[token, visit.pk])).status_code == 404
    visit.refresh_from_db()
    assert visit.status == VisitStatus.BOOKED


def test_a_time_taken_between_the_offer_and_the_confirmation_is_refused(client, plan):
    integration = _planned(plan, "integration")
    visit = integration.visit
    token = _token(visit.patient)
    move_url = reverse("patient_move", args=[token, visit.pk])
    length = visit.end - visit.start
    choice = next(  # a time clear of the visit's own (which it would leave)
        s
        for s in _offered_starts(client.get(move_url).text)
        if s >= visit.end or s + length <= visit.start
    )
    # Someone else is booked with the same therapist at that time meanwhile.
    someone = Patient.objects.filter(clinic=plan.patient.clinic).exclude(pk=visit.patient_id)[2]
    booking.book(
        patient=someone, visit_type=visit.visit_type, clinician=visit.clinician, start=choice
    )
    refused = client.post(move_url, {"start": choice.isoformat()})
    assert refused.status_code == 409 and self_service.NOT_FREE in refused.text
    visit.refresh_from_db()
    assert visit.start != choice and visit.moves_by_patient == 0


def test_in_the_demo_an_integration_is_offered_only_times_after_its_dose(client, demo):
    integration = PlannedVisit.objects.select_related("visit", "step", "follows__visit").get(
        visit__patient__clinic=demo,
        step__visit_type__kind="integration",
        care_plan__patient=PlannedVisit.objects.filter(step__visit_type__kind="dosing")
        .order_by("pk")
        .first()
        .care_plan.patient,
    )
    dose = integration.follows.visit
    token = _token(integration.visit.patient)
    offered = _offered_starts(
        client.get(reverse("patient_move", args=[token, integration.visit.pk])).text
    )
    assert offered
    for start in offered:
        gap = start - dose.end
        assert integration.step.min_gap <= gap <= integration.step.max_gap
