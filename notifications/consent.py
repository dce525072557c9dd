"""Opting out of and back into texts, whichever way it reaches us.

A STOP reply, a "stop texting me" reply, or Twilio's error 21610 (the carrier
says the number opted out) all end texts at once: the opt-out is recorded on
every patient with that number and their pending texts are cancelled. START or
UNSTOP records fresh consent and revives the texts the opt-out cancelled that
are still worth sending.
"""

from datetime import datetime

from django.db.models import F, Q, QuerySet

from notifications.models import Channel, Message, Status
from scheduler.models import BLOCKING_STATUSES, ConsentMethod, Patient

OPTED_OUT = "The patient opted out of texts."


def record_opt_out(patients: QuerySet[Patient], now: datetime) -> int:
    """Record the opt-out and cancel pending texts; returns how many texts were cancelled."""
    patients.filter(
        Q(sms_opted_out_at__isnull=True) | Q(sms_opted_out_at__lt=F("sms_consent_at"))
    ).update(sms_opted_out_at=now)
    # Texts to clinicians about the patient (clinical alerts) are not the patient's to stop.
    return Message.objects.filter(
        patient__in=patients, channel=Channel.SMS, status=Status.PENDING, clinician=None
    ).update(status=Status.CANCELLED, reason=OPTED_OUT, updated_at=now)


def record_opt_in(patients: QuerySet[Patient], now: datetime) -> int:
    """Record consent given by text (START); returns how many cancelled texts were revived."""
    patients.update(
        sms_consent_at=now, sms_consent_method=ConsentMethod.SMS_KEYWORD, contact_by_sms=True
    )
    # Only texts still to come, of visits still on at the time they were planned for.
    return Message.objects.filter(
        patient__in=patients,
        channel=Channel.SMS,
        status__in=(Status.CANCELLED, Status.SUPPRESSED),
        reason=OPTED_OUT,
        send_at__gt=now,
        visit__status__in=BLOCKING_STATUSES,
        visit_sequence=F("visit__sequence"),
    ).update(status=Status.PENDING, reason="", updated_at=now)
