"""When the patient pays: the clinic's payment option applied to a plan's dates.

``schedule`` splits the estimate's total (``billing.estimates``) into what is
due on which day: at each visit, a deposit when the plan is booked and the
rest at each visit, or a number of instalments on the dates of visits spread
over the plan. Amounts are spread in cents, the remainder on the last, so they
always add up to the total.

Reminders of an instalment go through the outbox (``notifications``), hung on
the visit it falls due at, by email only: a text could be read by anyone near
the phone, and money next to a clinic's name says too much. Only when the
clinic turns them on (``ClinicBilling.instalment_reminders``). A move or a
cancellation re-plans them (a ``visit_saved`` receiver, in the booking's
transaction); a row planned for a schedule that changed since is refused at
sending (``refusal``).
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import dateformat, timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _

from billing.estimates import CENT, Estimate, for_plan, plan_visits
from billing.models import ZERO, ClinicBilling, PaymentOption
from notifications.content import Composer, Email
from notifications.models import Channel, Message, Purpose
from notifications.rules import quiet_hours_for
from plans.models import CarePlan, PlanStatus
from scheduler.models import Visit, VisitStatus
from scheduler.timezones import zone

# Reminders go at this local time, the set number of days before the instalment.
REMINDER_TIME = time(10, 0)
BOOKED = (VisitStatus.BOOKED, VisitStatus.CONFIRMED)


@dataclass(frozen=True)
class Instalment:
    due_on: date
    amount: Decimal
    label: str
    visit_id: int | None = None


def spread(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """``total`` in parts proportional to ``weights``, in cents; the last takes the remainder."""
    if not weights:
        return []
    whole = sum(weights, ZERO)
    parts = [(total * weight / whole).quantize(CENT) if whole else ZERO for weight in weights[:-1]]
    return [*parts, total - sum(parts, ZERO)]


def schedule(estimate: Estimate, billing: ClinicBilling, booked_on: date, tz) -> list[Instalment]:
    """What is due when, for ``estimate`` under the clinic's payment option.

    ``booked_on``: the day the plan was booked (a deposit falls due then);
    ``tz``: the clinic's zone, in which a visit's day is counted.
    """
    lines = estimate.lines
    if not lines:
        return []
    days = [timezone.localtime(line.start, tz).date() for line in lines]
    if billing.payment_option == PaymentOption.INSTALMENTS:
        count = min(billing.instalments, len(lines))
        # On the days of visits spread evenly over the plan, the first visit first.
        picks = [len(lines) * i // count for i in range(count)]
        amounts = spread(estimate.total, [Decimal(1)] * count)
        return [
            Instalment(
                days[i],
                amount,
                format_lazy(_("Instalment {n} of {count}"), n=n, count=count),
                lines[i].visit_id,
            )
            for n, (i, amount) in enumerate(zip(picks, amounts, strict=True), start=1)
        ]
    due = []
    rest = estimate.total
    if billing.payment_option == PaymentOption.DEPOSIT:
        deposit = min(billing.deposit, estimate.total)
        due.append(Instalment(booked_on, deposit, _("Deposit")))
        rest -= deposit
    amounts = spread(rest, [line.fee for line in lines])
    due += [
        Instalment(
            day,
            amount,
            format_lazy(_("At the visit: {visit}"), visit=line.visit_type),
            line.visit_id,
        )
        for day, line, amount in zip(days, lines, amounts, strict=True)
    ]
    return due


def for_care_plan(
    plan: CarePlan,
    visits: list[Visit] | None = None,
    *,
    estimate: Estimate | None = None,
    billing: ClinicBilling | None = None,
) -> list[Instalment]:
    """The plan's schedule (``estimate`` and ``billing``, when the caller has them, are not read again)."""
    clinic = plan.protocol.clinic
    booked_on = timezone.localtime(plan.confirmed_at or plan.created_at, clinic.tz).date()
    return schedule(
        estimate or for_plan(plan, visits),
        billing or ClinicBilling.of(clinic),
        booked_on,
        clinic.tz,
    )


# -- reminders through the outbox -------------------------------------------------------


def plan_reminders(sender, visit: Visit, change, previous=None, **kwargs) -> None:
    """``visit_saved`` receiver: an email before each instalment due at one of the plan's visits."""
    planned = getattr(visit, "planned", None) if _has_plan(visit) else None
    if planned is None:
        return
    plan = CarePlan.objects.select_related("protocol__clinic", "patient").get(
        pk=planned.care_plan_id
    )
    billing = ClinicBilling.of(plan.protocol.clinic)
    patient = plan.patient
    if (
        not billing.instalment_reminders
        or plan.status == PlanStatus.CANCELLED
        or not (patient.email and patient.contact_by_email)
    ):
        return
    visits = plan_visits(plan)
    by_id = {v.pk: v for v in visits}
    now = timezone.now()
    quiet = quiet_hours_for(patient)
    rows = []
    for instalment in for_care_plan(plan, visits):
        due_at = by_id.get(instalment.visit_id)
        if due_at is None or due_at.status not in BOOKED:
            continue
        send_at = datetime.combine(
            instalment.due_on - timedelta(days=billing.instalment_reminder_days),
            REMINDER_TIME,
            tzinfo=zone(patient.time_zone),
        )
        send_at = quiet.next_allowed(max(send_at, now))
        if send_at >= due_at.start:
            continue
        rows.append(
            Message(
                visit=due_at,
                patient=patient,
                purpose=Purpose.INSTALMENT_DUE,
                channel=Channel.EMAIL,
                visit_sequence=due_at.sequence,
                recipient=patient.email,
                send_at=send_at,
                expires_at=due_at.start,
            )
        )
    planned_already = set(
        Message.objects.filter(
            visit__in=[row.visit for row in rows], purpose=Purpose.INSTALMENT_DUE
        ).values_list("visit_id", "visit_sequence")
    )
    Message.objects.bulk_create(
        [row for row in rows if (row.visit.pk, row.visit_sequence) not in planned_already]
    )


def _has_plan(visit: Visit) -> bool:
    try:
        return visit.planned is not None
    except Visit.planned.RelatedObjectDoesNotExist:
        return False


def _instalment_of(message: Message) -> Instalment | None:
    """The instalment still due at the message's visit, or None."""
    visit = message.visit
    planned = getattr(visit, "planned", None) if _has_plan(visit) else None
    if planned is None:
        return None
    return next((i for i in for_care_plan(planned.care_plan) if i.visit_id == visit.pk), None)


def refusal(message: Message) -> str:
    visit = Visit.objects.filter(pk=message.visit_id).values("status", "sequence").first()
    if visit is None or visit["status"] not in BOOKED:
        return "The visit is no longer on."
    if visit["sequence"] != message.visit_sequence:
        return "The visit moved after this was planned."
    if _instalment_of(message) is None:
        return "No instalment falls due at this visit any more."
    if not ClinicBilling.of(message.visit.clinic).instalment_reminders:
        return "The clinic turned instalment reminders off."
    return ""


def sms_text(message: Message, link: str = "") -> str:
    """Never planned (reminders go by email); should a row ever be, it names neither money nor care."""
    return render_to_string(
        "billing/sms/instalment_due.txt",
        {"first_name": message.patient.first_name, "clinic": message.visit.clinic.name},
    ).strip()


def email(message: Message, link: str = "") -> Email:
    instalment = _instalment_of(message)
    visit = message.visit
    context = {
        "first_name": message.patient.first_name,
        "clinic": visit.clinic,
        "amount": instalment.amount if instalment else None,
        "currency": settings.CURRENCY,
        "due_on": instalment.due_on if instalment else None,
        "link": link,
        "phone": visit.clinic.phone,
    }
    if instalment:
        # Translators: a Django date format, the day a payment falls due in a subject: "Dec 14".
        day = dateformat.format(instalment.due_on, pgettext("date format", "M j"))
        subject = gettext("%(clinic)s: a payment falls due on %(day)s") % {
            "clinic": visit.clinic.name,
            "day": day,
        }
    else:
        subject = gettext("%(clinic)s: a payment falls due soon") % {"clinic": visit.clinic.name}
    return Email(
        subject=subject,
        text=render_to_string("billing/email/instalment_due.txt", context).strip() + "\n",
        html=render_to_string("billing/email/instalment_due.html", context),
    )


composer = Composer(sms=sms_text, email=email, refusal=refusal, carries_link=True)
