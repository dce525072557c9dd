"""Mobile numbers: parsed and validated with libphonenumber, stored as E.164."""

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


def format_for_display(e164: str) -> str:
    if not e164:
        return ""
    number = phonenumbers.parse(e164, None)
    region = phonenumbers.region_code_for_number(number)
    if region == settings.PHONE_REGION:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


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

    def formfield(self, **kwargs):
        # The form field must accept what people type, e.g. "(212) 555-0147".
        kwargs.setdefault("max_length", 40)
        return super().formfield(**kwargs)
