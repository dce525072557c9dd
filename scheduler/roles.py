"""Who a signed-in user is to the clinic: front desk, clinician, clinic admin.

Roles come from what the clinic already keeps: the "Front desk" and "Clinic
admins" groups (seed_demo creates both), superusers, and a ``Clinician`` row.
A user can hold several (a nurse who also works the desk).
"""

from collections.abc import Callable
from enum import StrEnum
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

FRONT_DESK_GROUP = "Front desk"
CLINIC_ADMINS_GROUP = "Clinic admins"


class Role(StrEnum):
    FRONT_DESK = "front_desk"
    CLINICIAN = "clinician"
    ADMIN = "admin"


def roles_of(user) -> frozenset[Role]:
    """The user's roles, computed once per request (two small queries) and kept on the user."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_clinic_roles", None)
    if cached is not None:
        return cached
    groups = set(user.groups.values_list("name", flat=True))
    roles = set()
    if FRONT_DESK_GROUP in groups:
        roles.add(Role.FRONT_DESK)
    if CLINIC_ADMINS_GROUP in groups or user.is_superuser:
        roles.add(Role.ADMIN)
    if _clinician_of(user) is not None:
        roles.add(Role.CLINICIAN)
    user._clinic_roles = frozenset(roles)
    return user._clinic_roles


def _clinician_of(user):
    from scheduler.models import Clinician

    try:
        clinician = user.clinician
    except Clinician.DoesNotExist:
        return None
    return clinician if clinician.is_active else None


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
