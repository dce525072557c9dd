"""Who a signed-in user is to the clinic: front desk, clinician, clinic admin.

Roles come from what the clinic already keeps: the "Front desk" and "Clinic
admins" groups (seed_demo creates both), superusers, and a ``Clinician`` row.
A user can hold several (a nurse who also works the desk).
"""

from collections.abc import Callable
from enum import StrEnum
from functools import wraps

from django.contrib.auth import get_user_model
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
    """The user's roles, computed once per request (one small query) and kept on the user."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_clinic_roles", None)
    if cached is not None:
        return cached
    # Groups and the clinician row in one query (both left-joined on the user).
    rows = list(
        get_user_model()
        .objects.filter(pk=user.pk)
        .values_list("groups__name", "clinician__is_active")
    )
    groups = {group for group, _ in rows}
    roles = set()
    if FRONT_DESK_GROUP in groups:
        roles.add(Role.FRONT_DESK)
    if CLINIC_ADMINS_GROUP in groups or user.is_superuser:
        roles.add(Role.ADMIN)
    if any(active for _, active in rows):
        roles.add(Role.CLINICIAN)
    user._clinic_roles = frozenset(roles)
    return user._clinic_roles


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
