"""The demo clinic's protocols (the typical induction series in docs/rules.md), created idempotently."""

from datetime import UTC, datetime

from plans.models import CONTRAINDICATIONS, Anchor, Protocol, ProtocolStep, Screening
from scheduler.models import Clinic, Patient, VisitType

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
SCREENED_AT = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def seed_screenings(patients: list[Patient]) -> None:
    for patient in patients[:SCREENED_PATIENTS]:
        prescriber = patient.clinic.clinicians.filter(is_prescriber=True).order_by("pk").first()
        Screening.objects.update_or_create(
            patient=patient,
            defaults={
                "answers": dict.fromkeys(CONTRAINDICATIONS, False),
                "answered_by": prescriber,
                "answered_at": SCREENED_AT,
                "cleared": True,
                "cleared_by": prescriber,
                "cleared_at": SCREENED_AT,
            },
        )


def seed(clinic: Clinic, patients: list[Patient]) -> list[Protocol]:
    """Seed the plans layer of the demo clinic: its protocols, and the first patients' screenings."""
    protocols = seed_protocols(clinic)
    seed_screenings(patients)
    return protocols
