"""Members of the "Front desk" and "Clinic admins" groups become members of every clinic.

Before memberships, those groups let a user work at the installation's one
clinic; this keeps existing installations as they were.
"""

from django.db import migrations

GROUP_ROLES = {"Front desk": "front_desk", "Clinic admins": "admin"}


def memberships_from_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Clinic = apps.get_model("scheduler", "Clinic")
    StaffMembership = apps.get_model("scheduler", "StaffMembership")
    clinics = list(Clinic.objects.all())
    rows = [
        StaffMembership(user=user, clinic=clinic, role=role)
        for group in Group.objects.filter(name__in=GROUP_ROLES)
        for user in group.user_set.all()
        for clinic in clinics
        for role in [GROUP_ROLES[group.name]]
    ]
    StaffMembership.objects.bulk_create(rows, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("scheduler", "0023_staff_memberships"),
    ]

    operations = [migrations.RunPython(memberships_from_groups, migrations.RunPython.noop)]
