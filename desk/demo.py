"""The web app's layer of the demo clinic: what each sign-in group may do in the admin,
and the demo staff's authenticator apps.

The groups themselves (and who is in them) come with the staff in
``scheduler.demo``; their permissions reach into every app, so they are set
here, last.

Clinic admins and clinicians sign in with a second factor (desk/second_factor.py).
Each demo account that needs one gets an authenticator key made from its
username, as its password is: published by construction, so that anyone
trying the demo can add it to an app, or print the current code with
``manage.py demo_code NAME``. Never on a real installation.
"""

import hashlib
from base64 import b32encode

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django_otp.plugins.otp_totp.models import TOTPDevice

from scheduler.demo import CLINIC_ADMINS, CLINICIANS, DENVER_STAFF, FRONT_DESK, STAFF
from scheduler.roles import needs_second_factor

DEMO_DEVICE_NAME = "Demo authenticator (seed_demo)"

# The apps whose models the demo groups get permissions on.
DEMO_APPS = ("scheduler", "plans", "notifications")

# Front desk books and changes; clinicians look; clinic admins run the place.
# "*" is every model of DEMO_APPS.
GROUP_PERMISSIONS = {
    FRONT_DESK: {
        "view": "*",
        "add": ["visit", "patient", "careplan"],
        # The front desk resends failed messages and works the inbox of replies.
        "change": ["visit", "patient", "careplan", "message", "inboundmessage"],
    },
    # Clinicians see the schedule and, in the admin, only their own visits and
    # patients; messages, replies, screenings and plans of other clinicians'
    # patients are not theirs to browse.
    CLINICIANS: {
        "view": [
            "clinic",
            "openinghours",
            "closure",
            "room",
            "capability",
            "clinician",
            "workinghours",
            "timeoff",
            "visittype",
            "visit",
            "patient",
            "protocol",
            "protocolstep",
        ]
    },
    CLINIC_ADMINS: {"view": "*", "add": "*", "change": "*", "delete": "*"},
}
# Questionnaires: answers and scores are the patient's clinicians' and the clinic admins'
# (questionnaires.scores), never the front desk's; admins also keep the instruments, the
# asking rules and the safety policy.
QUESTIONNAIRE_PERMISSIONS = {
    CLINICIANS: ["view_instrument", "view_questionnaireresponse", "view_safetyalert"],
    CLINIC_ADMINS: [
        f"{action}_{model}"
        for model in ("instrument", "askingrule", "safetypolicy")
        for action in ("view", "add", "change")
    ]
    + ["view_questionnairerequest", "view_questionnaireresponse", "view_safetyalert"],
}
# Billing: admins keep fees, prices, policies and identifiers; estimates given and the
# ledger are written by the desk's pages only (billing.admin shows them read-only).
BILLING_SETTINGS = (
    "fee",
    "clinicbilling",
    "packageprice",
    "patientdiscount",
    "clinicianbilling",
    "diagnosis",
)
BILLING_PERMISSIONS = {
    FRONT_DESK: ["view_fee", "view_goodfaithestimate", "view_ledgerentry"],
    CLINIC_ADMINS: [
        f"{action}_{model}" for model in BILLING_SETTINGS for action in ("view", "add", "change")
    ]
    + ["view_goodfaithestimate", "view_ledgerentry"],
}


def seed() -> dict[str, Group]:
    """Give each demo group exactly its permissions; the groups by name."""
    every_model = [
        model._meta.model_name
        for label in DEMO_APPS
        for model in apps.get_app_config(label).get_models()
    ]
    groups = {}
    for name, grants in GROUP_PERMISSIONS.items():
        codenames = [
            f"{action}_{model}"
            for action, names in grants.items()
            for model in (every_model if names == "*" else names)
        ]
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label__in=DEMO_APPS, codename__in=codenames)
            | Permission.objects.filter(
                content_type__app_label="questionnaires",
                codename__in=QUESTIONNAIRE_PERMISSIONS.get(name, []),
            )
            | Permission.objects.filter(
                content_type__app_label="billing", codename__in=BILLING_PERMISSIONS.get(name, [])
            )
        )
        groups[name] = group
    return groups


def demo_key(username: str) -> str:
    """The demo account's TOTP key, as django-otp stores it (40 hex digits = 160 bits)."""
    return hashlib.sha1(f"demo-{username}-2026-second-factor".encode()).hexdigest()


def readable_key(hex_key: str) -> str:
    """The key as authenticator apps take it when typed: base32, in groups of four."""
    text = b32encode(bytes.fromhex(hex_key)).decode()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def seed_second_factors() -> dict[str, str]:
    """An authenticator app for each demo account that needs one; their keys by username."""
    keys = {}
    users = get_user_model().objects.filter(
        username__in=[member.username for member in STAFF + DENVER_STAFF]
    )
    for user in users.order_by("pk"):
        if not needs_second_factor(user):
            continue
        TOTPDevice.objects.update_or_create(
            user=user,
            name=DEMO_DEVICE_NAME,
            defaults={"key": demo_key(user.username), "confirmed": True},
        )
        keys[user.username] = readable_key(demo_key(user.username))
    return keys


def demo_device(username: str) -> TOTPDevice | None:
    """The account's demo authenticator, if it is one seed_demo made (its key is the demo's)."""
    return TOTPDevice.objects.filter(
        user__username=username, name=DEMO_DEVICE_NAME, key=demo_key(username), confirmed=True
    ).first()
