"""Payment schedules on a plan's dates, and instalment reminders by email only, when turned on."""

from datetime import date
from decimal import Decimal

import pytest
from django.core import mail

from billing import estimates, payments
from billing.models import ClinicBilling, PaymentOption
from notifications import transports
from notifications.dispatch import dispatch
from notifications.models import Channel, Message, Purpose, Status
from plans.care_plans import confirm, save_proposal
from plans.generator import generate
from plans.models import Protocol
from scheduler import booking
from scheduler.models import Clinic, Patient
from tests.language_helpers import english_left, untranslated
from tests.test_cost_estimates import START, move_a_dose

pytestmark = pytest.mark.usefixtures("now")


@pytest.fixture
def demo(demo_seeded, db, now):
    return Clinic.objects.get(slug="riverside")


def iv_estimate(clinic: Clinic, index: int = 0):
    patient = Patient.objects.filter(clinic=clinic).order_by("pk")[index]
    protocol = Protocol.objects.get(clinic=clinic, slug="iv-induction")
    return estimates.for_proposal(generate(patient, protocol, START))


@pytest.mark.parametrize("option", PaymentOption.values)
def test_every_option_adds_up_to_the_estimate_on_the_plans_dates(demo, option):
    estimate = iv_estimate(demo)
    billing = ClinicBilling(
        clinic=demo, payment_option=option, deposit=Decimal("500.00"), instalments=3
    )
    booked_on = date(2030, 1, 20)
    due = payments.schedule(estimate, billing, booked_on, demo.tz)
    assert sum(i.amount for i in due) == estimate.total
    visit_days = {line.start.astimezone(demo.tz).date() for line in estimate.lines}
    if option == PaymentOption.INSTALMENTS:
        assert len(due) == 3 and {i.due_on for i in due} <= visit_days
        assert due[0].due_on == min(visit_days)
        # Equal parts, the cents left over on the last.
        assert len({i.amount for i in due[:-1]}) == 1
    elif option == PaymentOption.DEPOSIT:
        assert (due[0].label, due[0].due_on, due[0].amount) == ("Deposit", booked_on, 500)
        assert len(due) == len(estimate.lines) + 1
    else:
        assert [i.due_on for i in due] == [
            line.start.astimezone(demo.tz).date() for line in estimate.lines
        ]


def test_spread_keeps_every_cent():
    parts = payments.spread(Decimal("100.00"), [Decimal(1)] * 3)
    assert parts == [Decimal("33.33"), Decimal("33.33"), Decimal("33.34")]


def booked_plan(clinic: Clinic, index: int):
    patient = Patient.objects.filter(clinic=clinic).order_by("pk")[index]
    protocol = Protocol.objects.get(clinic=clinic, slug="iv-induction")
    return confirm(save_proposal(generate(patient, protocol, START)))


def test_instalment_reminders_go_by_email_only(demo, now, messaging):
    plan = booked_plan(demo, 3)
    reminders = Message.objects.filter(patient=plan.patient, purpose=Purpose.INSTALMENT_DUE)
    instalments = payments.for_care_plan(plan)
    assert reminders.count() == len(instalments) == 3
    assert set(reminders.values_list("channel", flat=True)) == {Channel.EMAIL}
    first = reminders.order_by("send_at").first()
    now.move_to(first.send_at)
    dispatch()
    first.refresh_from_db()
    assert first.status == Status.SENT
    assert transports.outbox == []  # no text at all
    (email,) = [m for m in mail.outbox if "payment" in m.subject]
    assert f"{instalments[0].amount} USD" in email.body
    assert "/p/" in email.body  # the patient's own page shows the schedule


def test_a_spanish_reader_gets_the_instalment_reminder_in_spanish(demo, now, messaging):
    plan = booked_plan(demo, 3)
    plan.patient.language = "es"
    plan.patient.save(update_fields=["language"])
    first = Message.objects.filter(patient=plan.patient, purpose=Purpose.INSTALMENT_DUE).earliest(
        "send_at"
    )
    due = payments.for_care_plan(plan)[0]
    now.move_to(first.send_at)
    with untranslated() as missing:
        dispatch()
    assert missing == set()
    (email,) = [m for m in mail.outbox if "pago" in m.subject]
    months = ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"]
    assert (
        email.subject
        == f"{demo.name}: un pago vence el {due.due_on.day} {months[due.due_on.month - 1]}"
    )
    amount = f"{due.amount}".replace(".", ",")  # money written the Spanish way
    assert f"{amount} USD vencen el" in email.body
    names = [demo.name, plan.patient.first_name, "USD"]
    assert english_left(email.body, *names) == [], email.body
    html = email.alternatives[0][0]
    assert 'lang="es"' in html and "Ver su calendario de pagos" in html


def test_moving_a_dose_replans_its_reminder_and_the_old_one_does_not_go(demo, now, messaging):
    plan = booked_plan(demo, 4)
    visits = estimates.plan_visits(plan)
    move_a_dose(visits, demo)
    pending = Message.objects.filter(
        patient=plan.patient, purpose=Purpose.INSTALMENT_DUE, status=Status.PENDING
    )
    # Each instalment's visit has a row for its current sequence; stale ones are refused.
    current = {(v.pk, v.sequence) for v in estimates.plan_visits(plan)}
    live = [m for m in pending if (m.visit_id, m.visit_sequence) in current]
    assert len(live) == len(payments.for_care_plan(plan))
    for message in pending.exclude(pk__in=[m.pk for m in live]):
        assert payments.refusal(message) != ""


def test_no_reminders_unless_the_clinic_turns_them_on(demo):
    ClinicBilling.objects.filter(clinic=demo).update(instalment_reminders=False)
    plan = booked_plan(demo, 5)
    assert not Message.objects.filter(patient=plan.patient, purpose=Purpose.INSTALMENT_DUE)


def test_a_cancelled_visit_takes_its_instalment_elsewhere(demo):
    plan = booked_plan(demo, 6)
    first = payments.for_care_plan(plan)[0]
    booking.cancel(next(v for v in estimates.plan_visits(plan) if v.pk == first.visit_id))
    again = payments.for_care_plan(plan)
    assert first.visit_id not in {i.visit_id for i in again}
    assert sum(i.amount for i in again) == estimates.for_plan(plan).total


def test_a_spanish_reader_reads_their_costs_in_spanish(demo, client):
    from notifications.patient_links import issue_patient_link
    from scheduler.models import VisitType

    ClinicBilling.objects.update_or_create(
        clinic=demo, defaults={"payment_option": PaymentOption.INSTALMENTS, "instalments": 3}
    )
    plan = booked_plan(demo, 3)
    patient = plan.patient
    patient.language = "es"
    patient.save(update_fields=["language"])
    link = issue_patient_link(patient)
    with untranslated() as missing:
        page = client.get("/" + link.split("://", 1)[1].split("/", 1)[1] + "costs/")
    assert missing == set()
    assert page.status_code == 200
    main = page.content.decode().split('<main id="main"', 1)[1]
    assert "Sus costos" in main and "Total estimado" in main and "Pago 1 de 3" in main
    assert "Estimación de Buena Fe" in main and "1-800-985-3059" in main
    names = [demo.name, patient.first_name, patient.last_name]
    names += list(VisitType.objects.filter(clinic=demo).values_list("name", flat=True))
    assert english_left(main, *names) == [], main
