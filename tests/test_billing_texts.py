"""Texts never name money and treatment together: the cost feature's only text names neither,
and its reminders are planned by email only."""

import re

import pytest

from billing import payments
from notifications.content import SMS_PURPOSES, composers, treatment_words
from notifications.models import Message, Purpose
from scheduler import booking
from tests.conftest import MONDAY, at

pytestmark = pytest.mark.usefixtures("now")

# An amount, a currency or a word about paying.
MONEY = re.compile(
    r"[$€£]|\b(USD|EUR|dollars?|fees?|pay|paid|payments?|instalments?|installments?|"
    r"charges?|balance|owe|costs?|price|invoice|bill)\b|\d+[.,]\d{2}\b",
    re.IGNORECASE,
)


def billing_purposes() -> list[str]:
    return [purpose for purpose, composer in composers.items() if composer is payments.composer]


def test_the_instalment_purpose_is_composed_by_billing_and_has_no_text_template():
    assert billing_purposes() == [Purpose.INSTALMENT_DUE]
    assert Purpose.INSTALMENT_DUE not in SMS_PURPOSES


def test_every_text_the_cost_feature_can_produce_names_neither_money_nor_treatment(clinic):
    patient = clinic.patient("Avery", "Applewood")
    visit = booking.book(
        patient=patient,
        visit_type=clinic.iv,
        clinician=clinic.prescriber,
        room=clinic.room1,
        start=at(MONDAY, "09:00"),
    )
    for purpose in billing_purposes():
        message = Message(visit=visit, patient=patient, purpose=purpose, channel="sms")
        body = composers[purpose].sms(message, "https://clinic.example.org/p/x/")
        assert body.strip()
        assert MONEY.search(body) is None, body
        assert treatment_words(body) == [], body
    # The pattern does catch what it must.
    assert MONEY.search("Your instalment of 300.00 is due") is not None
