"""Who a signed-in user is at the clinic they work in: front desk, clinician, clinic admin.

An installation may serve several clinics of one organisation. A user works at
the clinics they are a member of (``StaffMembership``: front desk or clinic
admin there), at their own clinic as a clinician (``Clinician.clinic``), and a
superuser at every clinic. Of those, they work in one at a time: the one they
chose last (``ChosenClinic``, kept across sessions and devices), else the
first. Their desk and admin roles are those they hold in that clinic; being a
clinician is about their own visits, so it holds whichever clinic is chosen.
A user can hold several roles (a nurse who also works the desk).

The "Front desk" and "Clinic admins" groups carry the admin's model
permissions; which clinics a user works in comes from memberships.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache, wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse
from django_otp.plugins.otp_totp.models import TOTPDevice

from scheduler.models import ChosenClinic, Clinic, Clinician, StaffMembership, StaffRole

FRONT_DESK_GROUP = "Front desk"
CLINIC_ADMINS_GROUP = "Clinic admins"


class Role(StrEnum):
    FRONT_DESK = "front_desk"
    CLINICIAN = "clinician"
    ADMIN = "admin"


@dataclass(frozen=True)
class Access:
    # The roles held in the chosen clinic (and clinician, wherever).
    roles: frozenset[Role]
    # Whether a password is not enough: the session must be verified with a
    # second factor (desk/second_factor.py enforces it on every staff page).
    needs_second_factor: bool
    # The clinic the user works in now, and every clinic they may choose.
    clinic: Clinic | None = None
    clinics: tuple[Clinic, ...] = ()


NO_ACCESS = Access(frozenset(), False)


def access_of(user) -> Access:
    """The user's clinics, the one they work in, their roles there and whether they
    sign in with a second factor.

    Computed once per request (one small query: one row per clinic of the
    installation) and kept on the user. A second factor is needed by clinic
    admins, clinicians, anyone else who can open the admin, the front desk of
    a clinic that asks for it (``Clinic.front_desk_needs_second_factor``), and
    anyone who has set one up.
    """
    if not user.is_authenticated or not user.is_active:
        return NO_ACCESS
    cached = getattr(user, "_clinic_access", None)
    if cached is not None:
        return cached
    sql, params = _clinics_query()
    params = tuple(user.pk if _is_user_marker(param) else param for param in params)
    clinics = list(Clinic.objects.raw(sql, params))
    if not clinics:  # nothing set up yet: no roles, only whether an app was set up
        enrolled = TOTPDevice.objects.filter(user=user.pk, confirmed=True).exists()
        user._clinic_access = Access(frozenset(), enrolled or user.is_staff)
        return user._clinic_access
    mine = tuple(
        clinic
        for clinic in clinics
        if user.is_superuser or clinic.desk_here or clinic.admin_here or clinic.clinician_here
    )
    chosen = next((clinic for clinic in mine if clinic.chosen), mine[0] if mine else None)
    roles = set()
    if chosen is not None and chosen.desk_here:
        roles.add(Role.FRONT_DESK)
    if chosen is not None and (chosen.admin_here or user.is_superuser):
        roles.add(Role.ADMIN)
    if any(clinic.clinician_here for clinic in clinics):
        roles.add(Role.CLINICIAN)
    needs = (
        clinics[0].enrolled
        or bool(roles & {Role.ADMIN, Role.CLINICIAN})
        or any(clinic.desk_here and clinic.front_desk_needs_second_factor for clinic in mine)
        or (not roles and user.is_staff)
    )
    user._clinic_access = Access(frozenset(roles), needs, chosen, mine)
    return user._clinic_access


# Where the user's id goes in ``_clinics_query``'s parameters: no user has it.
_USER_MARKER = -1


def _is_user_marker(param) -> bool:
    return type(param) is int and param == _USER_MARKER


@lru_cache(maxsize=1)
def _clinics_query() -> tuple[str, tuple]:
    """Every clinic with what the user is there, as SQL and parameters, the user's id
    marked (``_USER_MARKER``).

    Every staff request asks it, and Django took longer to build and compile
    its five subqueries than the database took to run them (3 ms of Python a
    request); only the user's id changes.
    """
    memberships = StaffMembership.objects.filter(user=_USER_MARKER, clinic=OuterRef("pk"))
    clinics = Clinic.objects.order_by("pk").annotate(
        desk_here=Exists(memberships.filter(role=StaffRole.FRONT_DESK)),
        admin_here=Exists(memberships.filter(role=StaffRole.ADMIN)),
        clinician_here=Exists(
            Clinician.objects.filter(user=_USER_MARKER, clinic=OuterRef("pk"), is_active=True)
        ),
        chosen=Exists(ChosenClinic.objects.filter(user=_USER_MARKER, clinic=OuterRef("pk"))),
        enrolled=Exists(TOTPDevice.objects.filter(user=_USER_MARKER, confirmed=True)),
    )
    return clinics.query.sql_with_params()


def choose_clinic(user, clinic_id: int) -> Clinic | None:
    """Make the clinic with ``clinic_id`` the one ``user`` works in, remembered for
    their next sessions; None (and nothing changed) when they are no member of it."""
    clinic = next((c for c in access_of(user).clinics if c.pk == clinic_id), None)
    if clinic is not None:
        ChosenClinic.objects.update_or_create(user=user, defaults={"clinic": clinic})
        user._clinic_access = None  # roles follow the clinic
    return clinic


def working_clinic(request: HttpRequest) -> Clinic:
    """The clinic this request works in (``access_of``): every staff page shows its
    rows only. A 404 when the user works in none (none set up, or no membership)."""
    clinic = access_of(request.user).clinic
    if clinic is None:
        raise Http404("No clinic is set up for you yet.")
    return clinic


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
