"""Signed-in users per role, synthetic days full of visits, and what pages offer, for the page tests."""

import re
from datetime import date, datetime, time, timedelta
from itertools import count

import django_otp
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from notifications.models import Channel, Message, Purpose, Status
from scheduler.models import Clinic, Patient, StaffMembership, StaffRole, Visit, VisitStatus
from scheduler.roles import CLINIC_ADMINS_GROUP, FRONT_DESK_GROUP

_numbers = count(1)


MEMBERSHIP_OF_GROUP = {FRONT_DESK_GROUP: StaffRole.FRONT_DESK, CLINIC_ADMINS_GROUP: StaffRole.ADMIN}


# Desk and admin users of every clinic of the test (``staff_user`` without ``clinics``):
# (user id, role), made members of clinics set up after them in the same test too.
# Emptied after each test (tests/conftest.py).
MEMBERS_EVERYWHERE: list[tuple[int, str]] = []


def staff_user(group: str | None = FRONT_DESK_GROUP, *, password: str = "", clinics=None, **extra):
    """A staff account in ``group``; a desk or admin one is a member of ``clinics``
    (default: every clinic of the test, those set up after the user too, as a
    test's fixtures come in any order)."""
    user = get_user_model().objects.create_user(
        username=f"staff{next(_numbers)}", password=password or None, **extra
    )
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    if group in MEMBERSHIP_OF_GROUP:
        role = MEMBERSHIP_OF_GROUP[group]
        StaffMembership.objects.bulk_create(
            StaffMembership(user=user, clinic=clinic, role=role)
            for clinic in (Clinic.objects.all() if clinics is None else clinics)
        )
        if clinics is None:
            MEMBERS_EVERYWHERE.append((user.pk, role))
    return user


@receiver(post_save, sender=Clinic, dispatch_uid="tests.page_helpers.members_everywhere")
def _members_of_a_new_clinic(sender, instance: Clinic, created: bool, raw=False, **kwargs):
    if created and not raw and MEMBERS_EVERYWHERE:
        StaffMembership.objects.bulk_create(
            StaffMembership(user_id=user_id, clinic=instance, role=role)
            for user_id, role in MEMBERS_EVERYWHERE
        )


def front_desk(password: str = "", *, clinics=None):
    return staff_user(FRONT_DESK_GROUP, password=password, clinics=clinics)


def clinic_admin(*, clinics=None):
    return staff_user(CLINIC_ADMINS_GROUP, clinics=clinics)


def sign_in_verified(client, user) -> None:
    """Sign ``user`` in on the test ``client`` with the second step passed.

    As ``force_login`` stands for the password, this stands for the code page:
    the user gets an authenticator app (django-otp's TOTPDevice) if they have
    none, and the session records it through ``django_otp.login``, the call
    desk/second_factor.py makes after a right code. Needed for clinic admins,
    clinicians and any staff account that must use a second factor.
    """
    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Test app", confirmed=True)
    request = HttpRequest()
    request.session = client.session
    request.user = user
    django_otp.login(request, device)
    request.session.save()


def crowd(
    clinic, day: date, n: int, *, patient: Patient | None = None, failing=True, after: int = 0
):
    """``n`` visits on ``day`` (local), back to back, each with a failed text.

    Written directly, not booked: the page tests measure pages, and direct rows
    let them fill a day past opening hours. Consecutive half hours never
    overlap, so PostgreSQL's exclusion constraints accept them; ``after`` skips
    the half hours an earlier call on the same day filled.
    """
    tz = clinic.clinic.tz
    visits = []
    for index in range(after, after + n):
        person = patient or Patient.objects.create(
            clinic=clinic.clinic,
            first_name=f"Crowd{index}",
            last_name=f"Person{next(_numbers)}",
            date_of_birth=date(1980, 1, 1),
            time_zone=clinic.clinic.time_zone,
        )
        start = datetime.combine(day, time(0), tzinfo=tz) + timedelta(minutes=30 * index)
        dosing = index % 2 == 0
        visit = Visit.objects.create(
            patient=person,
            visit_type=clinic.iv if dosing else clinic.integration,
            clinician=clinic.prescriber if dosing else clinic.therapist,
            room=clinic.room1 if dosing else None,
            start=start,
            end=start + timedelta(minutes=30),
            status=VisitStatus.BOOKED,
        )
        if failing:
            failed_message(visit)
        visits.append(visit)
    return visits


def failed_message(visit: Visit, status: str = Status.FAILED, *, sequence: int = 0) -> Message:
    """A text for ``visit`` that the provider never took (the clinic's test visit types have
    no reminder policy, so booking plans none)."""
    return Message.objects.create(
        visit=visit,
        patient=visit.patient,
        purpose=Purpose.REMINDER,
        channel=Channel.SMS,
        # A notice is unique per visit sequence: older sequences give a visit more rows.
        visit_sequence=visit.sequence + sequence,
        recipient="+12125550199",
        send_at=visit.start - timedelta(days=1),
        expires_at=visit.start,
        status=status,
        last_error="Unreachable" if status == Status.FAILED else "",
    )


def offered_times(page_text: str) -> list[str]:
    """The times a visit page offers to move to, as their form values (lead:room:team:start)."""
    return re.findall(r'<option value="(\d+:\d*:[^"]+)"', page_text)


def admin_form_data(response) -> dict:
    """What an admin change page would send back unchanged: its form and every inline's rows."""
    form = response.context["adminform"].form
    data = {
        form[name].html_name: form[name].value()
        for name in form.fields
        if form[name].value() is not None
    }
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data |= {management[name].html_name: management[name].value() for name in management.fields}
        for row in formset.forms:
            data |= {
                row[name].html_name: row[name].value()
                for name in row.fields
                if row[name].value() is not None
            }
    return data
