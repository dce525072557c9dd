"""Mobile numbers: parsed and validated with libphonenumber, stored as E.164."""

import functools

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# US numbers are mostly FIXED_LINE_OR_MOBILE: the numbering plan cannot tell a
# landline from a mobile there, so only numbers known to be something else
# (pagers, toll-free, premium rate, ...) are refused. Twilio reports landlines
# it discovers when sending (error 30006).
TEXTABLE_TYPES = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


def normalize_mobile(value: str, region: str | None = None) -> str:
    """Return ``value`` as an E.164 string, or raise ValidationError saying why not."""
    region = region or settings.PHONE_REGION
    text = (value or "").strip()
    if not text:
        raise ValidationError("Enter a mobile number.", code="required")
    if len(text) > 40:
        raise ValidationError("That is too long to be a phone number.", code="invalid")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            "%(value)s is not a phone number; include the country code (+1 ...) "
            "if it is not a %(region)s number.",
            code="invalid",
            params={"value": text, "region": region},
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            "%(value)s is not a valid phone number.", code="invalid", params={"value": text}
        )
    if phonenumbers.number_type(number) not in TEXTABLE_TYPES:
        raise ValidationError(
            "%(value)s is not a mobile number; text messages need a mobile number.",
            code="not_mobile",
            params={"value": text},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def format_for_display(phone: str) -> str:
    """A phone number as people here dial it: national form for the clinic's own country
    (``PHONE_REGION``), international otherwise. A stored mobile (E.164) and a clinic
    phone typed as free text both work; text that is no valid number stays as typed."""
    return _format_for_display(phone, settings.PHONE_REGION)


# Every text of a dispatch batch shows its clinic's phone; parsing it each time
# cost as much as rendering the text.
@functools.lru_cache(maxsize=256)
def _format_for_display(phone: str, region: str) -> str:
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return phone
    if not phonenumbers.is_valid_number(number):
        return phone
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if phonenumbers.region_code_for_number(number) == region
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(number, fmt)


def search_digits(text: str) -> str:
    """The digits of a search that looks like (part of) a phone number, else "".

    Mobiles are stored as +12125550147; people search "(212) 555-0147" or
    "555-0147", which a word-by-word search cannot match. Text with letters
    ("Ann 2") is a name, and fewer than four digits would match nearly every
    number.
    """
    digits = "".join(ch for ch in text if ch.isdigit())
    looks_like_phone = all(ch.isdigit() or ch in " +-.()" for ch in text.strip())
    return digits if looks_like_phone and len(digits) >= 4 else ""


class MobileNumberField(models.CharField):
    """A CharField whose cleaning normalises to E.164 and refuses non-mobile numbers."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 16)  # E.164: '+' and at most 15 digits
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        return normalize_mobile(value)

    def pre_save(self, model_instance, add):
        # What is stored is always E.164, whether or not the caller cleaned it.
        value = self.to_python(getattr(model_instance, self.attname))
        setattr(model_instance, self.attname, value)
        return value

    def get_prep_value(self, value):
        # A lookup compares with what is stored: a number no patient could
        # have (a landline texting us, a short code) matches nothing. CharField
        # would clean it, and refuse it with a ValidationError mid-query.
        value = models.Field.get_prep_value(self, value)
        return value if value is None else str(value)

    def formfield(self, **kwargs):
        # The form field must accept what people type, e.g. "(212) 555-0147".
        kwargs.setdefault("max_length", 40)
        return super().formfield(**kwargs)
