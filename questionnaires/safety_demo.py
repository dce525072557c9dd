"""The demo clinic's safety set-up: its prescribers and therapists can be texted an alert, and
the first prescriber is the clinical lead alerts escalate to. Idempotent: numbers are given
only to clinicians without one, and an existing policy is left as the clinic set it."""

from django.db.models import Q

from questionnaires.models import SafetyPolicy
from scheduler.models import Clinic

# Fictional numbers (555-01xx), in another area code than the demo patients'.
DEMO_MOBILE = "+1646555{:04d}"


def seed(clinic: Clinic) -> SafetyPolicy:
    care_team = clinic.clinicians.filter(Q(is_prescriber=True) | Q(is_therapist=True))
    for number, clinician in enumerate(care_team.order_by("user__username"), start=101):
        if not clinician.mobile:
            clinician.mobile = DEMO_MOBILE.format(number)
            clinician.save(update_fields=["mobile"])
    lead = clinic.clinicians.filter(is_prescriber=True).order_by("user__username").first()
    policy, _ = SafetyPolicy.objects.get_or_create(clinic=clinic, defaults={"clinical_lead": lead})
    return policy
