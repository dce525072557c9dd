"""The plans layer of the demo clinic, created idempotently: its protocols (the
typical induction series in docs/rules.md), the screenings of the first
patients, each done in a visit a few weeks ago and cleared at its end, and for
two of them a first dose with the integration session after it, the start of
their care plan (so its rules hold wherever those visits move). The clinic's
setting is certified in the Spravato REMS and two screened patients are enrolled;
one of them had two Spravato sessions lately, recorded in full, whose monitoring
forms are still to be submitted (one overdue, one due in a few days).

What is past is written as it stands (completed visits, no messages): booking
is for times still ahead. What is ahead is booked through ``scheduler.booking``
and keeps every rule a desk booking keeps. A patient who already has a visit of
the kind is left as they are, so reruns on later days add nothing.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from plans.models import (
    CONTRAINDICATIONS,
    Anchor,
    CarePlan,
    MonitoringFormTask,
    PlannedVisit,
    PlanStatus,
    Protocol,
    ProtocolStep,
    RemsEnrollment,
    RemsSetting,
    Screening,
    SessionRecord,
    SpravatoDose,
)
from scheduler import booking
from scheduler.availability import Availability, free_slots
from scheduler.demo import BOOKING_WINDOW_DAYS
from scheduler.models import (
    Clinic,
    Patient,
    Visit,
    VisitKind,
    VisitStatus,
    VisitType,
)

logger = logging.getLogger(__name__)

DAY = 24

# slug -> (name, protocol rules, steps); each step: (visit type slug, fields).
# ``after`` names an earlier step by position.
DEMO_PROTOCOLS = {
    "iv-induction": (
        "IV induction series",
        {"min_hours_between_doses": 40, "max_doses_per_week": 3},
        [
            ("screening", {"anchor": Anchor.START}),
            ("preparation", {"min_gap_hours": 1 * DAY, "max_gap_hours": 14 * DAY}),
            (
                "iv-infusion",
                {
                    "count": 6,
                    "min_gap_hours": 1 * DAY,
                    "max_gap_hours": 14 * DAY,
                    "min_spacing_hours": 40,  # at least a day between infusions
                    "max_spacing_hours": 4 * DAY,  # six infusions in 2-3 weeks
                    "max_per_week": 3,
                },
            ),
            (
                "integration",
                {
                    "anchor": Anchor.AFTER_EACH,
                    "after": 3,
                    "min_gap_hours": 1 * DAY,
                    "max_gap_hours": 3 * DAY,
                },
            ),
            (
                "maintenance",
                {
                    "after": 3,
                    "min_gap_hours": 28 * DAY,
                    "recurrence": "FREQ=MONTHLY;COUNT=3",
                    "recurrence_tolerance_days": 7,
                },
            ),
        ],
    ),
    "kap-lozenge": (
        "KAP with lozenges",
        {"min_hours_between_doses": 5 * DAY, "max_doses_per_week": 2},
        [
            ("screening", {"anchor": Anchor.START}),
            (
                "preparation",
                {
                    "count": 2,
                    "min_gap_hours": 1 * DAY,
                    "max_gap_hours": 14 * DAY,
                    "min_spacing_hours": 2 * DAY,
                    "max_spacing_hours": 10 * DAY,
                },
            ),
            (
                "lozenge-dosing",
                {
                    "count": 6,
                    "min_gap_hours": 1 * DAY,
                    "max_gap_hours": 14 * DAY,
                    "min_spacing_hours": 5 * DAY,
                    "max_spacing_hours": 10 * DAY,
                },
            ),
            (
                "integration",
                {
                    "anchor": Anchor.AFTER_EACH,
                    "after": 3,
                    "min_gap_hours": 1 * DAY,
                    "max_gap_hours": 7 * DAY,
                },
            ),
            (
                "maintenance",
                {
                    "after": 3,
                    "min_gap_hours": 28 * DAY,
                    "recurrence": "FREQ=MONTHLY;COUNT=3",
                    "recurrence_tolerance_days": 7,
                },
            ),
        ],
    ),
    "spravato": (
        "Esketamine nasal spray (REMS)",
        {"min_hours_between_doses": 2 * DAY, "max_doses_per_week": 2},
        [
            ("screening", {"anchor": Anchor.START}),
            (
                "intranasal-dosing",
                {
                    "name": "Weeks 1-4: twice a week",
                    "count": 8,
                    "min_gap_hours": 1 * DAY,
                    "max_gap_hours": 14 * DAY,
                    "min_spacing_hours": 2 * DAY,
                    "max_spacing_hours": 5 * DAY,
                    "max_per_week": 2,
                },
            ),
            (
                "intranasal-dosing",
                {
                    "name": "Weeks 5-8: weekly",
                    "count": 4,
                    "min_gap_hours": 5 * DAY,
                    "max_gap_hours": 9 * DAY,
                    "min_spacing_hours": 6 * DAY,
                    "max_spacing_hours": 8 * DAY,
                    "max_per_week": 1,
                },
            ),
            (
                "intranasal-dosing",
                {
                    "name": "Week 9 on: every other week",
                    "min_gap_hours": 12 * DAY,
                    "recurrence": "FREQ=WEEKLY;INTERVAL=2;COUNT=4",
                    "recurrence_tolerance_days": 3,
                },
            ),
        ],
    ),
}


def seed_protocols(clinic: Clinic) -> list[Protocol]:
    visit_types = {vt.slug: vt for vt in VisitType.objects.filter(clinic=clinic)}
    protocols = []
    for slug, (name, rules, steps) in DEMO_PROTOCOLS.items():
        protocol, _ = Protocol.objects.update_or_create(
            clinic=clinic, slug=slug, defaults={"name": name, **rules}
        )
        protocol.full_clean()
        by_position = {}
        for position, (visit_type_slug, fields) in enumerate(steps, start=1):
            fields = dict(fields)
            after = fields.pop("after", None)
            defaults = {
                "name": "",
                "count": 1,
                "anchor": Anchor.AFTER_STEP,
                "after_step": by_position.get(after),
                "min_gap_hours": 0,
                "max_gap_hours": None,
                "min_spacing_hours": 0,
                "max_spacing_hours": None,
                "max_per_week": None,
                "recurrence": "",
                "recurrence_tolerance_days": 7,
                "visit_type": visit_types[visit_type_slug],
                **fields,
            }
            step, _ = ProtocolStep.objects.update_or_create(
                protocol=protocol, position=position, defaults=defaults
            )
            step.full_clean()
            by_position[position] = step
        protocol.steps.filter(position__gt=len(steps)).delete()
        protocols.append(protocol)
    return protocols


# Half the demo patients have a screening a prescriber cleared, so that dosing
# plans can be confirmed for them; the others show the screening gate at work.
SCREENED_PATIENTS = 10
# Their screening visits lie this many days back and later (two days apart),
# ending the day before the demo is seeded at the latest.
SCREENING_HISTORY_DAYS = 28

# (patient index, protocol slug): a first dose in the coming two weeks, by the
# protocol's dosing visit type, then the integration session its window asks for.
DEMO_DOSES = [(4, "iv-induction"), (5, "kap-lozenge")]


def screening_visit(patient: Patient, turn: int) -> Visit | None:
    """The patient's completed screening visit: the one they had, or one written in the past now.

    The first free time of a prescriber (taking turns) from a few weeks back,
    found like any free time: in opening hours, never on a holiday the clinic
    is closed on, clear of every other visit.
    """
    done = (
        Visit.objects.filter(
            patient=patient,
            visit_type__kind=VisitKind.SCREENING,
            status=VisitStatus.COMPLETED,
        )
        .order_by("start")
        .first()
    )
    if done is not None:
        return done
    clinic = patient.clinic
    visit_type = VisitType.objects.get(clinic=clinic, slug="screening")
    prescribers = list(clinic.clinicians.filter(is_prescriber=True).order_by("pk"))
    today = timezone.localdate(timezone=clinic.tz)
    first_day = today - timedelta(days=SCREENING_HISTORY_DAYS - 2 * turn)
    last_day = today - timedelta(days=1)
    slots = free_slots(
        visit_type,
        first_day,
        last_day,
        clinicians=[prescribers[turn % len(prescribers)]],
        patient=patient,
        limit=1,
    ) or free_slots(visit_type, first_day, last_day, patient=patient, limit=1)
    if not slots:
        logger.warning("No past screening time for %s; not screened.", patient)
        return None
    slot = slots[0]
    return done_in(slot, patient, visit_type)


def done_in(slot, patient: Patient, visit_type: VisitType, **extra) -> Visit:
    """A visit completed in the past ``slot``, with its team, written as it stands."""
    visit = Visit(
        patient=patient,
        visit_type=visit_type,
        clinician=slot.clinician,
        room=slot.room,
        start=slot.start,
        end=slot.end,
        status=VisitStatus.COMPLETED,
        **extra,
    )
    return booking.save_with_team(visit, slot.staff)


def seed_screenings(patients: list[Patient]) -> list[Visit]:
    """The first patients' screenings, cleared by the prescriber who saw them, as the visit ended."""
    visits = []
    for turn, patient in enumerate(patients[:SCREENED_PATIENTS]):
        visit = screening_visit(patient, turn)
        if visit is None:
            continue
        Screening.objects.update_or_create(
            patient=patient,
            defaults={
                "answers": dict.fromkeys(CONTRAINDICATIONS, False),
                "answered_by": visit.clinician,
                "answered_at": visit.end,
                "cleared": True,
                "cleared_by": visit.clinician,
                "cleared_at": visit.end,
            },
        )
        visits.append(visit)
    return visits


def _first_slot(visit_type, patient, earliest, latest):
    """The first free time for ``visit_type`` between two instants, or None.

    Day by day from one read of the days, so the search stops at the first day
    with a time instead of finding every free time of the weeks.
    """
    clinic = visit_type.clinic  # where it is held, the patient's home clinic or not
    day, last_day = (timezone.localdate(t, timezone=clinic.tz) for t in (earliest, latest))
    availability = Availability.for_days(clinic, day, last_day, patients=[patient])
    while day <= last_day:
        for slot in availability.free_slots(visit_type, day, day, patient=patient):
            if earliest <= slot.start <= latest:
                return slot
        day += timedelta(days=1)
    return None


def _book(patient: Patient, slot, **extra) -> Visit:
    return booking.book_slot(patient, extra.pop("visit_type"), slot, **extra)


def seed_doses(clinic: Clinic, patients: list[Patient], doses=DEMO_DOSES) -> list[Visit]:
    """A first dose for some screened patients, and the integration after it, within its window.

    Only for a patient with no dose and no integration yet; the dose has its
    ride home arranged, as the desk would before check-in.
    """
    booked = []
    now = timezone.now()
    for number, (index, slug) in enumerate(doses):
        patient = patients[index]
        if Visit.objects.filter(
            patient=patient, visit_type__kind__in=[VisitKind.DOSING, VisitKind.INTEGRATION]
        ).exists():
            continue
        steps = list(Protocol.objects.get(clinic=clinic, slug=slug).steps.order_by("position"))
        dosing = next(step for step in steps if step.visit_type.is_dosing)
        after = next(
            step
            for step in steps
            if step.anchor == Anchor.AFTER_EACH and step.after_step_id == dosing.pk
        )
        slot = _first_slot(
            dosing.visit_type,
            patient,
            now + timedelta(days=3 + number),
            now + timedelta(days=BOOKING_WINDOW_DAYS),
        )
        if slot is None:
            logger.warning("No free time for a dose for %s; skipped.", patient)
            continue
        dose = _book(patient, slot, visit_type=dosing.visit_type, ride_home_arranged=True)
        window = (dose.end + after.min_gap, dose.end + after.max_gap)
        slot = _first_slot(after.visit_type, patient, *window)
        if slot is None:
            booking.cancel(dose, "Demo: no integration session could follow it.")
            logger.warning("No integration time after %s's dose; dose cancelled.", patient)
            continue
        integration = _book(patient, slot, visit_type=after.visit_type)
        _start_of_course(patient, dosing, dose, after, integration, window)
        booked += [dose, integration]
    return booked


def _start_of_course(
    patient, dosing, dose: Visit, after, integration: Visit, window: tuple
) -> CarePlan:
    """The dose and its integration as the first visits of the patient's care plan.

    So the plan's rules hold wherever the visits move (on the desk's visit page
    or from the patient's own page): the integration stays in its window after
    the dose, and moving the dose takes the integration along where it must.
    Both keep where they were first booked; the integration keeps ``window``,
    the one it was booked in (the dose went to a free time, in no step's window).
    """
    plan = CarePlan.objects.create(
        patient=patient,
        protocol=dosing.protocol,
        status=PlanStatus.ACTIVE,
        start_date=timezone.localdate(dose.start, timezone=dose.clinic.tz),
        warnings=["The first dose and its integration; the rest of the course is to be planned."],
        total_cost=dose.visit_type.price + integration.visit_type.price,
        confirmed_at=timezone.now(),
    )
    first = PlannedVisit.objects.create(
        care_plan=plan, visit=dose, step=dosing, occurrence=1, proposed_start=dose.start
    )
    PlannedVisit.objects.create(
        care_plan=plan,
        visit=integration,
        step=after,
        occurrence=1,
        follows=first,
        proposed_start=integration.start,
        window_earliest=window[0],
        window_latest=window[1],
    )
    return plan


# Screened patients enrolled in the Spravato REMS; the first had two sessions lately.
SPRAVATO_PATIENTS = [6, 7]
# (first, last) days back of each past session's window: the first session's form
# is overdue whatever day it fell on, the second's due within a week.
SPRAVATO_SESSION_DAYS = [(12, 8), (4, 1)]


def seed_rems(clinic: Clinic, patients: list[Patient]) -> list[Visit]:
    """The certified setting, the Spravato patients' enrolment and their past sessions."""
    RemsSetting.objects.update_or_create(
        clinic=clinic,
        defaults={
            "name": f"{clinic.name}, treatment suites",
            "setting_id": "HCS-DEMO-0001",
            "certified_on": timezone.localdate(timezone=clinic.tz) - timedelta(days=365),
        },
    )
    sessions = []
    for number, index in enumerate(SPRAVATO_PATIENTS):
        screening = (
            Visit.objects.filter(
                patient=patients[index],
                visit_type__kind=VisitKind.SCREENING,
                status=VisitStatus.COMPLETED,
            )
            .order_by("start")
            .first()
        )
        if screening is None:
            continue  # not screened (no past time was free): not enrolled either
        RemsEnrollment.objects.get_or_create(
            patient=patients[index],
            defaults={
                "enrolled_on": screening.end.astimezone(clinic.tz).date(),
                "patient_rems_id": f"PT-DEMO-{index:04d}",
                "recorded_at": screening.end,
            },
        )
        if number == 0:
            sessions += spravato_sessions(patients[index], screening)
    return sessions


def spravato_sessions(patient: Patient, screening: Visit) -> list[Visit]:
    """Two completed Spravato sessions after the screening, each with its full record and an
    open monitoring-form task. Written as they stand, like the screening visits."""
    clinic = patient.clinic
    visit_type = VisitType.objects.get(clinic=clinic, slug="intranasal-dosing")
    done = list(Visit.objects.filter(patient=patient, visit_type=visit_type).order_by("start"))
    if done:
        return done
    today = timezone.localdate(timezone=clinic.tz)
    screened_on = screening.end.astimezone(clinic.tz).date()
    sessions = []
    for back_from, back_to in SPRAVATO_SESSION_DAYS:
        first_day = max(today - timedelta(days=back_from), screened_on + timedelta(days=1))
        slots = free_slots(
            visit_type, first_day, today - timedelta(days=back_to), patient=patient, limit=1
        )
        if not slots:
            logger.warning("No past Spravato time for %s; skipped.", patient)
            continue
        slot = slots[0]
        visit = done_in(slot, patient, visit_type, ride_home_arranged=True)
        dose_at = slot.start + timedelta(minutes=30)  # after the pre-dose checks
        record = SessionRecord(
            visit=visit,
            bp_before_systolic=124,
            bp_before_diastolic=78,
            bp_after_40_systolic=138,
            bp_after_40_diastolic=86,
            bp_discharge_systolic=126,
            bp_discharge_diastolic=80,
            heart_rate=72,
            spo2=97,
            monitoring_start=dose_at,
            monitoring_end=dose_at + timedelta(hours=2),
            ready_to_leave_at=dose_at + timedelta(minutes=80),
            vitals_ok_before_dose=True,
            vitals_ok_before_discharge=True,
            sedation=True,
            sedation_resolved_at=dose_at + timedelta(minutes=55),
            dissociation=True,
            dissociation_resolved_at=dose_at + timedelta(minutes=70),
            ride_home="Partner (synthetic)",
            dose=SpravatoDose.MG_56,
            lot_number="DEMO-LOT-0420",
            serious_adverse_events="None",
        )
        record.full_clean()
        record.save()
        MonitoringFormTask.objects.get_or_create(
            visit=visit, defaults={"due_on": MonitoringFormTask.due_for(visit)}
        )
        sessions.append(visit)
    return sessions


@dataclass
class PlansDemo:
    """What the command's report needs from this layer."""

    protocols: list[Protocol]
    history: list[Visit] = field(default_factory=list)  # the screening and Spravato visits done
    booked: list[Visit] = field(default_factory=list)  # booked by this run


def seed(clinic: Clinic, patients: list[Patient]) -> PlansDemo:
    """Seed the plans layer of the demo clinic (see the module's docstring)."""
    protocols = seed_protocols(clinic)
    history = seed_screenings(patients)
    history += seed_rems(clinic, patients)
    return PlansDemo(protocols, history, seed_doses(clinic, patients))


# The Denver location opens its lozenge course to the organisation's other
# clinics, and one screened New York patient with no dose yet starts it there.
OPEN_PROTOCOL = "kap-lozenge"
TRAVELLING_PATIENT = 8
# Denver's first three patients had their screening there; the fourth comes for it.
DENVER_SCREENED = 3


def seed_second_location(
    clinic: Clinic, patients: list[Patient], home_patients: list[Patient]
) -> PlansDemo:
    """Seed the plans layer of the organisation's second location (``scheduler.demo.DENVER``)."""
    protocols = seed_protocols(clinic)
    opened = next(protocol for protocol in protocols if protocol.slug == OPEN_PROTOCOL)
    if not opened.open_to_other_clinics:
        opened.open_to_other_clinics = True
        opened.save(update_fields=["open_to_other_clinics", "updated_at"])
    history = seed_screenings(patients[:DENVER_SCREENED])
    travelling = home_patients[TRAVELLING_PATIENT]
    # The rule the desk's plans keep (Protocol.refusal_for) holds for the demo too.
    if refusal := opened.refusal_for(travelling):
        logger.warning("%s; no visit in %s for them.", refusal, clinic)
        booked = []
    else:
        booked = seed_doses(clinic, home_patients, [(TRAVELLING_PATIENT, OPEN_PROTOCOL)])
    return PlansDemo(protocols, history, booked)
