"""Who a signed-in user is to the clinic: front desk, clinician, clinic admin.

Roles come from what the clinic already keeps: the "Front desk" and "Clinic
admins" groups (seed_demo creates both), superusers, and a ``Clinician`` row.
A user can hold several (a nurse who also works the desk).
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps

from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django_otp.plugins.otp_totp.models import TOTPDevice

from scheduler.models import Clinic

FRONT_DESK_GROUP = "Front desk"
CLINIC_ADMINS_GROUP = "Clinic admins"


class Role(StrEnum):
    FRONT_DESK = "front_desk"
    CLINICIAN = "clinician"
    ADMIN = "admin"


@dataclass(frozen=True)
class Access:
    roles: frozenset[Role]
    # Whether a password is not enough: the session must be verified with a
    # second factor (desk/second_factor.py enforces it on every staff page).
    needs_second_factor: bool


NO_ACCESS = Access(frozenset(), False)


def access_of(user) -> Access:
    """The user's roles and whether they sign in with a second factor.

    Computed once per request (one small query) and kept on the user. A second
    factor is needed by clinic admins, clinicians, anyone else who can open the
    admin, the front desk where the clinic asks for it
    (``Clinic.front_desk_needs_second_factor``), and anyone who has set one up.
    """
    if not user.is_authenticated or not user.is_active:
        return NO_ACCESS
    cached = getattr(user, "_clinic_access", None)
    if cached is not None:
        return cached
    # Groups and the clinician row (both left-joined on the user), the
    # installation's clinic's rule for the desk and any authenticator app, in one query.
    rows = list(
        get_user_model()
        .objects.filter(pk=user.pk)
        .annotate(
            desk_second_factor=Subquery(
                Clinic.objects.order_by("pk").values("front_desk_needs_second_factor")[:1]
            ),
            enrolled=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
        )
        .values_list("groups__name", "clinician__is_active", "desk_second_factor", "enrolled")
    )
    groups = {group for group, *_ in rows}
    roles = set()
    if FRONT_DESK_GROUP in groups:
        roles.add(Role.FRONT_DESK)
    if CLINIC_ADMINS_GROUP in groups or user.is_superuser:
        roles.add(Role.ADMIN)
    if any(active for _, active, *_ in rows):
        roles.add(Role.CLINICIAN)
    _, _, desk_second_factor, enrolled = rows[0] if rows else (None, None, False, False)
    needs = (
        bool(enrolled)
        or bool(roles & {Role.ADMIN, Role.CLINICIAN})
        or (Role.FRONT_DESK in roles and bool(desk_second_factor))
        or (not roles and user.is_staff)
    )
    user._clinic_access = Access(frozenset(roles), needs)
    return user._clinic_access


def roles_of(user) -> frozenset[Role]:
    """The user's roles (``access_of``)."""
    return access_of(user).roles


def needs_second_factor(user) -> bool:
    return access_of(user).needs_second_factor


# Admins may do everything the front desk does: in a small clinic they cover the desk.
DESK_ROLES = (Role.FRONT_DESK, Role.ADMIN)


def role_required(*allowed: Role) -> Callable:
    """Anonymous users go to the sign-in page; signed-in users without a role get 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not roles_of(request.user) & set(allowed):
                raise PermissionDenied("This page is not for your role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
