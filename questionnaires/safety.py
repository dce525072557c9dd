"""The safety path: answers that need a clinician today reach one within minutes.

A completed response (``signals.response_completed``, inside the submitting
transaction) is checked at once (``reasons_for``): the instrument's own safety
rules (PHQ-9 item 9 above "not at all") and, for a PHQ-9, a total at or over
the clinic's ``SafetyPolicy.phq9_total_threshold``. Any reason raises one
``SafetyAlert`` for the response and plans, in the same transaction, a text
and an email to each of the patient's clinicians who must hear of it
(``care_team``), due at once. Each message is tied to its alert by a
``SafetyNotice``, so the alert page says who was told and what became of
every message, and a message not yet sent when someone acknowledges the alert
is not sent at all.

Who hears of it (``care_team``): the patient's prescriber and therapist, each
taken from the visit the questionnaire was asked before if someone fills that
role there, else from the patient's nearest other visit with someone in that
role (the next one still to come, else the latest past one; cancelled visits,
no-shows and proposals do not count). If neither role is found, the clinic's
clinical lead is told at once. Nobody found at all: the alert still shows at
the top of the desk, saying nobody was told.

The texts carry no name, initials, score, instrument or treatment word: "A
patient's answers need review today" and a staff link, which opens the alert
page behind sign-in (and the second factor). The email says the same.

Messages hang on a visit (``Message.visit`` is required): the request's, or
else the patient's latest. Their once-ness is the alert's: one alert per
response, and escalation (``questionnaires.escalation``) claims an alert by a
conditional update, so a visit may see the texts of a second alert once the
first was dealt with.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from notifications.content import Composer, Email, sms_clinic_name
from notifications.models import PRIORITY, Channel, Message, Purpose
from questionnaires import scoring
from questionnaires.models import (
    QuestionnaireResponse,
    SafetyAlert,
    SafetyNotice,
    SafetyPolicy,
)
from scheduler.models import (
    BLOCKING_STATUSES,
    Clinic,
    Clinician,
    ClinicianRole,
    Patient,
    Visit,
    VisitParticipant,
)

PHQ9 = "phq-9"
CARE_TEAM_ROLES = (ClinicianRole.PRESCRIBER, ClinicianRole.THERAPIST)
# A text or email about an alert not sent within this long (the provider down,
# retries used up) fails visibly; by then escalation has told the clinical lead.
NOTICE_LIFETIME = timedelta(hours=24)


def policy_for(clinic: Clinic | int) -> SafetyPolicy:
    """The clinic's safety policy, or the defaults (60 opening minutes, no total threshold,
    no clinical lead) for a clinic that has set none; not saved."""
    clinic_id = getattr(clinic, "pk", clinic)
    policy = (
        SafetyPolicy.objects.select_related("clinical_lead__user")
        .filter(clinic_id=clinic_id)
        .first()
    )
    return policy or SafetyPolicy(clinic_id=clinic_id)


def reasons_for(response: QuestionnaireResponse, policy: SafetyPolicy) -> list[str]:
    """Why ``response`` needs a clinician today, one line each, in words; empty: it does not."""
    instrument = response.instrument
    score = scoring.score(instrument.questionnaire, instrument.scoring, response.answers)
    reasons = list(score.safety_reasons)
    threshold = policy.phq9_total_threshold
    if instrument.code == PHQ9 and threshold is not None and (score.total or 0) >= threshold:
        reasons.append(
            f"{instrument.short_name} total {score.total} is at or above the clinic's "
            f"threshold of {threshold}."
        )
    return reasons


def on_response_completed(sender, response: QuestionnaireResponse, **kwargs) -> None:
    raise_alert(response)


def raise_alert(response: QuestionnaireResponse, now: datetime | None = None) -> SafetyAlert | None:
    """An alert for ``response`` and its texts and emails, if its answers need a clinician today.

    Runs inside the transaction that completed the response: the alert and its
    messages commit with the answers, or not at all.
    """
    now = now or timezone.now()
    request = response.request
    patient = Patient.objects.select_related("clinic").get(pk=response.patient_id)
    policy = policy_for(patient.clinic_id)
    reasons = reasons_for(response, policy)
    if not reasons:
        return None
    alert = SafetyAlert.objects.create(
        patient=patient, response=response, reasons=reasons, created_at=now
    )
    team = care_team(patient, request.visit_id, now)
    if not team and policy.clinical_lead_id and policy.clinical_lead.is_active:
        team = [policy.clinical_lead]
    notify(alert, team, Purpose.SAFETY_ALERT, now)
    return alert


def care_team(patient: Patient, visit_id: int | None, now: datetime) -> list[Clinician]:
    """The patient's prescriber and therapist (see the module docstring), each once; one query."""
    places = (
        VisitParticipant.objects.filter(
            Q(visit_id=visit_id) | Q(visit__status__in=BLOCKING_STATUSES),
            visit__patient=patient,
            role__in=CARE_TEAM_ROLES,
            clinician__is_active=True,
        )
        .select_related("clinician__user", "visit")
        .order_by()
    )

    def nearness(place: VisitParticipant) -> tuple:
        start = place.visit.start
        if place.visit_id == visit_id:
            return (0, 0.0)
        if start >= now:
            return (1, (start - now).total_seconds())
        return (2, (now - start).total_seconds())

    team: dict[str, Clinician] = {}
    for place in sorted(places, key=lambda p: (nearness(p), p.position, p.pk)):
        team.setdefault(place.role, place.clinician)
    found = []
    for role in CARE_TEAM_ROLES:
        clinician = team.get(role)
        if clinician is not None and clinician not in found:
            found.append(clinician)
    return found


def visit_of(alert: SafetyAlert) -> Visit | None:
    """The visit the alert's messages hang on: the request's, else the patient's latest."""
    visit_id = alert.response.request.visit_id
    if visit_id is not None:
        return Visit.objects.get(pk=visit_id)
    return Visit.objects.filter(patient_id=alert.patient_id).order_by("-start").first()


def notify(
    alert: SafetyAlert, clinicians: list[Clinician], purpose: str, now: datetime
) -> list[Message]:
    """A text and an email about ``alert`` to each of ``clinicians``, due now.

    A clinician without a mobile still gets the text's row: the dispatch pass
    suppresses it with a reason the alert page shows, and the email goes.
    """
    visit = visit_of(alert)
    if visit is None or not clinicians:
        return []
    messages = []
    for clinician in clinicians:
        for channel in (Channel.SMS, Channel.EMAIL):
            message = Message(
                visit=visit,
                patient_id=alert.patient_id,
                clinician=clinician,
                purpose=purpose,
                channel=channel,
                visit_sequence=visit.sequence,
                send_at=now,
                expires_at=now + NOTICE_LIFETIME,
                priority=PRIORITY[purpose],
            )
            message.recipient = message.current_address
            messages.append(message)
    Message.objects.bulk_create(messages)
    SafetyNotice.objects.bulk_create(SafetyNotice(alert=alert, message=m) for m in messages)
    return messages


# -- what the messages say ------------------------------------------------------------


def alert_link(alert: SafetyAlert) -> str:
    """The alert's page for staff: behind sign-in, so the link itself tells nothing."""
    return f"{settings.SITE_URL}{reverse('desk_alert', args=[alert.pk])}"


def alert_of(message: Message) -> SafetyAlert | None:
    notice = (
        SafetyNotice.objects.select_related("alert__patient__clinic")
        .filter(message_id=message.pk)
        .first()
    )
    return notice.alert if notice else None


def _context(message: Message) -> dict:
    alert = alert_of(message)
    clinic = alert.patient.clinic
    return {
        "clinic": sms_clinic_name(clinic),
        "clinic_name": clinic.name,
        "link": alert_link(alert),
        "escalated": message.purpose == Purpose.SAFETY_ESCALATION,
    }


def sms_text(message: Message) -> str:
    return render_to_string("questionnaires/sms/alert.txt", _context(message))


def email(message: Message) -> Email:
    context = _context(message)
    subject = "A patient's answers need review today"
    if context["escalated"]:
        subject = f"Not yet acknowledged: {subject[0].lower()}{subject[1:]}"
    return Email(
        subject=subject,
        text=render_to_string("questionnaires/email/alert.txt", context).strip() + "\n",
        html=render_to_string("questionnaires/email/alert.html", context),
        headers=(("Auto-Submitted", "auto-generated"),),
    )


def refusal(message: Message) -> str:
    alert = alert_of(message)
    if alert is None:
        return "The alert is gone."
    if alert.acknowledged_at is not None:
        return "Someone acknowledged the alert before this went."
    return ""


composer = Composer(sms=sms_text, email=email, refusal=refusal)


# -- acknowledging ---------------------------------------------------------------------


def acknowledge(alert: SafetyAlert, user, action_taken: str, now: datetime | None = None) -> bool:
    """Record who acknowledged ``alert``, when, and what was done; False if someone already had.

    A conditional update: two clinicians acknowledging at once leave one
    acknowledgement, the first. Messages about the alert not yet sent are not
    sent (``refusal``); escalation no longer claims it.
    """
    now = now or timezone.now()
    done = SafetyAlert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
        acknowledged_at=now, acknowledged_by=user, action_taken=action_taken
    )
    if done:
        alert.acknowledged_at, alert.acknowledged_by, alert.action_taken = now, user, action_taken
    return bool(done)


def open_alerts(clinic: Clinic):
    """The clinic's unacknowledged alerts, oldest first, with their patients and whether the
    clinic has a clinical lead to escalate to (``has_lead``): one query."""
    lead = SafetyPolicy.objects.filter(
        clinic=OuterRef("patient__clinic"), clinical_lead__isnull=False
    )
    return (
        SafetyAlert.objects.unacknowledged()
        .filter(patient__in=Patient.objects.seen_at(clinic))
        .annotate(has_lead=Exists(lead))
        .select_related("patient")
        .order_by("created_at", "pk")
    )
