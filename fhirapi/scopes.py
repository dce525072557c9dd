"""SMART scopes: which resource types a client may read, search or write.

Both spellings SMART App Launch has used are understood: v1's
``system/Appointment.read`` / ``.write`` / ``.*`` and v2's letters
``system/Appointment.rs`` (create, read, update, delete, search). Only
``system/`` scopes mean anything here: a backend client acts for the clinic,
not for a signed-in user or patient.
"""

from typing import NamedTuple

READ = "r"
SEARCH = "s"
CREATE = "c"
UPDATE = "u"
DELETE = "d"

_V1 = {"read": {READ, SEARCH}, "write": {CREATE, UPDATE, DELETE}, "*": set("cruds")}


class Scope(NamedTuple):
    resource_type: str  # "Appointment" or "*"
    interactions: frozenset[str]

    def allows(self, resource_type: str, interaction: str) -> bool:
        return self.resource_type in ("*", resource_type) and interaction in self.interactions


def parse_scope(text: str) -> Scope | None:
    """The scope ``text`` names, or None when it is not a system scope we know."""
    context, _, rest = text.partition("/")
    resource_type, _, permissions = rest.partition(".")
    if context != "system" or not resource_type or not permissions:
        return None
    if permissions in _V1:
        return Scope(resource_type, frozenset(_V1[permissions]))
    # v2 letters appear in the order c, r, u, d, s; anything else is not a v2 scope.
    if permissions and all(p in "cruds" for p in permissions):
        order = "cruds"
        if list(permissions) == sorted(permissions, key=order.index) and len(
            set(permissions)
        ) == len(permissions):
            return Scope(resource_type, frozenset(permissions))
    return None


def parse_scopes(text: str) -> list[Scope]:
    return [scope for word in text.split() if (scope := parse_scope(word))]


def unknown_scopes(text: str) -> list[str]:
    """The words of ``text`` that are not scopes we understand (for validation)."""
    return [word for word in text.split() if parse_scope(word) is None]


def v1_name(interaction: str) -> str:
    """The v1 word that grants ``interaction``: "read" for read and search, else "write"."""
    return "read" if interaction in _V1["read"] else "write"


def covered(wanted: str, held: str) -> bool:
    """Whether the scopes ``held`` allow everything the one scope ``wanted`` asks for.

    A token request may ask for less than the client holds, never more:
    ``system/Patient.rs`` is covered by ``system/Patient.read`` or ``system/*.read``,
    ``system/*.read`` only by ``system/*.read`` (or ``.*``).
    """
    scope = parse_scope(wanted)
    return scope is not None and all(
        allows(held, scope.resource_type, interaction) for interaction in scope.interactions
    )


def allows(scopes: str, resource_type: str, interaction: str) -> bool:
    return any(scope.allows(resource_type, interaction) for scope in parse_scopes(scopes))
