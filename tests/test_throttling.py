"""Tokens (entropy, hashing, constant-time check, revocation, expiry) and their rate limit.

The sign-in lockout has its own module, test_signin_lockout.py.
"""

from datetime import timedelta

import pytest
from django.urls import reverse

from notifications.patient_links import issue_patient_link
from scheduler import tokens
from scheduler.models import AccessToken, TokenPurpose


@pytest.fixture
def avery(clinic):
    return clinic.patient("Avery", "Applewood")


def link_path(patient) -> str:
    return issue_patient_link(patient).removeprefix("http://localhost:8000")


# -- tokens ----------------------------------------------------------------------


def test_tokens_carry_at_least_128_random_bits_from_secrets_and_only_the_hash_is_kept(
    clinic, monkeypatch
):
    import secrets

    drawn = []
    real = secrets.token_urlsafe
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: drawn.append(n) or real(n))
    row, raw = tokens.issue(clinic.therapist)
    assert drawn == [tokens.TOKEN_BYTES] and tokens.TOKEN_BYTES * 8 >= 128
    assert len(raw) >= 43
    stored = AccessToken.objects.get(pk=row.pk)
    assert stored.digest == tokens.digest(raw) != raw
    assert raw not in str(AccessToken.objects.filter(pk=row.pk).values().get())


def test_verification_looks_up_by_hash_and_compares_in_constant_time(clinic, monkeypatch):
    import hmac

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append(a) or real(a, b))
    _, raw = tokens.issue(clinic.therapist)
    assert tokens.verify(raw, TokenPurpose.CALENDAR_FEED) is not None
    assert compared == [tokens.digest(raw)]
    assert tokens.verify(raw[:-1] + ("A" if raw[-1] != "A" else "B"), "calendar_feed") is None


def test_reissuing_revokes_and_revoking_ends_a_link(client, avery):
    old = link_path(avery)
    new = link_path(avery)
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200
    tokens.revoke(avery, TokenPurpose.PATIENT_LINK)
    assert client.get(new).status_code == 404


def test_patient_links_expire(client, avery, settings):
    import time_machine

    path = link_path(avery)
    with time_machine.travel(timedelta(days=settings.PATIENT_LINK_DAYS, seconds=-60)):
        assert client.get(path).status_code == 200
    with time_machine.travel(timedelta(days=settings.PATIENT_LINK_DAYS, seconds=60)):
        assert client.get(path).status_code == 404


# -- token endpoints -------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["feed", "patient page", "wrong token"])
def test_token_urls_answer_429_past_the_per_address_limit(
    client, clinic, avery, settings, endpoint
):
    settings.TOKEN_RATE_LIMIT = 5
    url = {
        "feed": lambda: reverse("calendar_feed", args=[tokens.issue(clinic.therapist)[1]]),
        "patient page": lambda: link_path(avery),
        "wrong token": lambda: reverse("patient_page", args=["x" * 43]),
    }[endpoint]()
    statuses = [client.get(url, REMOTE_ADDR="198.51.100.1").status_code for _ in range(6)]
    assert statuses[:5] == [404 if endpoint == "wrong token" else 200] * 5
    assert statuses[5] == 429
    refused = client.get(url, REMOTE_ADDR="198.51.100.1")
    assert refused["Retry-After"] == "60" and "Too many requests" in refused.text
    # Another address is counted on its own.
    assert client.get(url, REMOTE_ADDR="198.51.100.2").status_code != 429


def test_the_token_limit_is_per_minute(client, clinic, settings):
    import time_machine

    settings.TOKEN_RATE_LIMIT = 2
    url = reverse("calendar_feed", args=[tokens.issue(clinic.therapist)[1]])
    with time_machine.travel("2030-01-02 12:00:00Z", tick=False) as clock:
        assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
        clock.shift(61)
        assert client.get(url).status_code == 200
