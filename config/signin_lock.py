"""The sign-in lockout, through django-axes: one count for every way to sign in.

Every sign-in (the desk's form, the admin's, the second-factor step; anything
that calls ``django.contrib.auth.authenticate`` or sends ``user_login_failed``)
is checked by axes' backend, first in AUTHENTICATION_BACKENDS, and every
failure is counted by axes' database handler: rows in the database, so every
web process on every machine sees the same counts, with or without a shared
cache.

Two counts, two limits (settings):

- per account, LOGIN_FAILURE_LIMIT (10) failures lock the account from every
  address, for LOGIN_LOCKOUT_SECONDS (15 minutes) after the last one: a guesser
  aiming at one account from many addresses is stopped by this;
- per address, LOGIN_ADDRESS_FAILURE_LIMIT (50) failures, whatever the
  accounts, lock the address: a guesser spreading tries over many accounts is
  stopped by this. It is five times the account's limit because a clinic's
  staff sign in from behind one office address (NAT): a few people's typos must
  not lock everyone in the clinic out for 15 minutes.

Axes compares the largest of its counts with one limit (AXES_FAILURE_LIMIT,
the account's); ``SignInLockHandler`` gives the address its own.
"""

import ipaddress
from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The address the lock counts: REMOTE_ADDR, as every other limit (config.throttle).

    None when there is none or it is not an address (a test's forced login, a
    Unix socket): axes stores it in an address column, which PostgreSQL checks.
    """
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def account_name(request: HttpRequest, credentials: dict | None) -> str | None:
    """The account a sign-in names, as the lock counts it: trimmed and in lower case.

    Usernames are matched exactly when signing in, but "Marsh" and "marsh "
    must not be fresh accounts to a guesser.
    """
    if credentials:
        name = credentials.get("username")
    else:
        name = getattr(request, "POST", {}).get("username")
    return (name or "").strip().lower() or None


def lockout_time(request: HttpRequest | None = None) -> timedelta:
    """How long a lock lasts after the last failure (AXES_COOLOFF_TIME names this)."""
    return timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)


class SignInLockHandler(AxesDatabaseHandler):
    """axes' database handler, with a limit for the address apart from the account's."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        # The querysets come in the order of AXES_LOCKOUT_PARAMETERS.
        by_account, by_address = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        if by_address >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
            # An address past its own limit counts as an account at its limit.
            return max(by_account, settings.AXES_FAILURE_LIMIT)
        return by_account
