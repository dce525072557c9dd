"""The web app's layer of the demo clinic: what each sign-in group may do in the admin.

The groups themselves (and who is in them) come with the staff in
``scheduler.demo``; their permissions reach into every app, so they are set
here, last.
"""

from django.apps import apps
from django.contrib.auth.models import Group, Permission

from scheduler.demo import CLINIC_ADMINS, CLINICIANS, FRONT_DESK

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
        )
        groups[name] = group
    return groups
