"""The second factor: who needs it, setting up an authenticator app, signing in with a code
or a recovery code, the same lockout as passwords, the audit trail.

Codes are computed the way an authenticator app does, with django-otp's own
RFC 6238 function (``django_otp.oath.totp``) on the key the set-up page shows.
"""

import re
from base64 import b32decode

import pytest
import time_machine
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from scheduler.models import AuditAction, AuditEvent
from tests.page_helpers import front_desk, sign_in_verified

PASSWORD = "correct horse battery staple"
ADDRESS = "192.0.2.10"


@pytest.fixture
def clock():
    with time_machine.travel("2030-01-02 12:00:00Z", tick=False) as traveller:
        yield traveller


@pytest.fixture
def therapist(clinic, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = clinic.therapist.user
    user.set_password(PASSWORD)
    user.save()
    return user


def sign_in(client, user, page="login", **extra):
    url = reverse("admin:login") if page == "admin" else reverse(page)
    return client.post(
        url, {"username": user.username, "password": PASSWORD, **extra}, REMOTE_ADDR=ADDRESS
    )


def code_for(key: bytes, at_step: int = 0) -> str:
    """What an authenticator app shows now (or ``at_step`` steps of 30 s later)."""
    return f"{totp(key, drift=at_step):06d}"


def send_code(client, code, page="second_factor_verify", next_url=""):
    return client.post(reverse(page), {"code": code, "next": next_url}, REMOTE_ADDR=ADDRESS)


def set_up(client, user) -> tuple[bytes, list[str]]:
    """Sign in with the password, set up the app from the page's key; the key and recovery codes."""
    assert sign_in(client, user).status_code == 302
    page = client.get(reverse("second_factor_setup")).text
    key = b32decode(
        re.search(r'<code id="secret"[^>]*>([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")
    )
    codes_page = send_code(client, code_for(key), "second_factor_setup")
    assert codes_page.status_code == 200
    return key, re.findall(r"<li><code>([a-z2-7]+)</code></li>", codes_page.text)


def audited(action) -> list[str]:
    return list(
        AuditEvent.objects.filter(action=action).order_by("pk").values_list("detail", flat=True)
    )


def test_a_clinician_is_sent_to_set_up_an_app_and_gets_ten_one_time_recovery_codes(
    client, therapist, clock
):
    assert sign_in(client, therapist).status_code == 302
    calendar = client.get(reverse("my_calendar"))
    assert calendar.status_code == 302
    assert calendar["Location"].startswith(reverse("second_factor_setup") + "?next=")
    page = client.get(calendar["Location"])
    assert "<svg" in page.text and "QR code for your authenticator app" in page.text
    key = b32decode(
        re.search(r'<code id="secret"[^>]*>([A-Z2-7 ]+)</code>', page.text)
        .group(1)
        .replace(" ", "")
    )
    assert key == TOTPDevice.objects.get(user=therapist).bin_key and len(key) == 20

    wrong = send_code(
        client, "000000" if code_for(key) != "000000" else "111111", "second_factor_setup"
    )
    assert wrong.status_code == 400 and "did not work" in wrong.text
    assert client.get(reverse("my_calendar")).status_code == 302  # still not through
    assert "Wait a few seconds" in send_code(client, code_for(key), "second_factor_setup").text
    clock.shift(2)  # django-otp's pause after a wrong code

    codes_page = send_code(client, code_for(key), "second_factor_setup", reverse("my_calendar"))
    assert codes_page["Cache-Control"] == "no-store"
    codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", codes_page.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert f'href="{reverse("my_calendar")}"' in codes_page.text
    assert client.get(reverse("my_calendar")).status_code == 200
    assert audited(AuditAction.SECOND_FACTOR_ENROLLED) == ["authenticator app"]


def test_the_next_sign_in_asks_for_the_code_and_a_code_works_once(client, therapist, clock):
    key, _ = set_up(client, therapist)
    client.logout()
    assert sign_in(client, therapist).status_code == 302
    for page in ("my_calendar", "home"):
        response = client.get(reverse(page))
        assert response["Location"].startswith(reverse("second_factor_verify"))
    # The code set-up took is spent: the same 30 seconds' code is refused.
    assert send_code(client, code_for(key)).status_code == 400
    clock.shift(30)
    through = send_code(client, code_for(key), next_url=reverse("my_calendar"))
    assert through.status_code == 302 and through["Location"] == reverse("my_calendar")
    assert client.get(reverse("my_calendar")).status_code == 200
    assert audited(AuditAction.SECOND_FACTOR_VERIFIED) == ["authenticator app"]
    assert audited(AuditAction.SECOND_FACTOR_FAILED) == [""]


def test_a_recovery_code_signs_in_once(client, therapist, clock):
    _, codes = set_up(client, therapist)
    client.logout()
    sign_in(client, therapist)
    assert send_code(client, codes[0].upper()).status_code == 302
    assert client.get(reverse("my_calendar")).status_code == 200
    client.logout()
    clock.shift(60)  # past django-otp's pause after a wrong code
    sign_in(client, therapist)
    assert send_code(client, codes[0]).status_code == 400
    assert client.get(reverse("my_calendar")).status_code == 302
    assert StaticToken.objects.filter(token=codes[0]).count() == 0
    assert audited(AuditAction.RECOVERY_CODE_USED) == ["9 recovery codes left"]


def test_wrong_codes_count_in_the_sign_in_lockout_and_sign_out(client, therapist, clock):
    key, _ = set_up(client, therapist)
    client.logout()
    sign_in(client, therapist)
    right = code_for(key, at_step=1)
    wrong = "123456" if right != "123456" else "654321"
    for attempt in range(10):
        # django-otp makes each wrong code in a row wait longer (1, 2, 4 ... s); wait it out.
        clock.shift(2**attempt)
        response = send_code(client, wrong)
    assert response.status_code == 429 and "Too many failed sign-ins" in response.text
    assert "_auth_user_id" not in client.session
    # The account is locked for the password too, and the right code does not help.
    assert sign_in(client, therapist).status_code == 429
    assert len(audited(AuditAction.SECOND_FACTOR_FAILED)) == 10
    assert audited(AuditAction.SIGN_IN_LOCKED)[0].startswith("locked after 10 failed sign-ins")


def test_a_session_at_the_second_step_is_refused_once_the_account_is_locked(
    client, therapist, clock
):
    key, _ = set_up(client, therapist)
    client.logout()
    sign_in(client, therapist)
    # Meanwhile someone else fails the password ten times.
    from django.test import Client

    other = Client()
    for n in range(10):
        other.post(
            reverse("login"),
            {"username": therapist.username, "password": "wrong"},
            REMOTE_ADDR=f"198.51.100.{n}",
        )
    clock.shift(30)
    refused = send_code(client, code_for(key))
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_admin_login_is_no_way_round_the_second_step(client, therapist, clock):
    therapist.is_staff = True
    therapist.save()
    TOTPDevice.objects.create(user=therapist, name="Phone", confirmed=True)
    assert sign_in(client, therapist, page="admin", next="/admin/").status_code == 302
    for url in ("/admin/", reverse("admin:scheduler_visit_changelist"), reverse("my_calendar")):
        assert client.get(url)["Location"].startswith(reverse("second_factor_verify")), url


def test_the_front_desk_needs_it_only_where_the_clinic_asks(client, clinic, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    desk = front_desk(password=PASSWORD)
    sign_in(client, desk)
    assert client.get(reverse("desk_today")).status_code == 200
    clinic.clinic.front_desk_needs_second_factor = True
    clinic.clinic.save()
    response = client.get(reverse("desk_today"))
    assert response["Location"].startswith(reverse("second_factor_setup"))


def test_someone_who_set_up_an_app_uses_it_even_when_not_required(client, clinic, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    desk = front_desk(password=PASSWORD)
    TOTPDevice.objects.create(user=desk, name="Phone", confirmed=True)
    sign_in(client, desk)
    assert client.get(reverse("desk_today"))["Location"].startswith(reverse("second_factor_verify"))


def test_setting_up_again_needs_the_code_first_and_replaces_app_and_recovery_codes(
    client, therapist, clock
):
    old_key, old_codes = set_up(client, therapist)
    client.logout()
    sign_in(client, therapist)
    # Not through the second step yet: set-up sends to the code page first.
    assert client.get(reverse("second_factor_setup"))["Location"].startswith(
        reverse("second_factor_verify")
    )
    clock.shift(30)
    send_code(client, code_for(old_key))
    new_key, new_codes = set_up_again(client)
    assert new_key != old_key
    assert TOTPDevice.objects.filter(user=therapist).count() == 1
    assert set(
        StaticToken.objects.filter(device__user=therapist).values_list("token", flat=True)
    ) == set(new_codes)
    assert not set(old_codes) & set(new_codes)


def set_up_again(client) -> tuple[bytes, list[str]]:
    page = client.get(reverse("second_factor_setup")).text
    key = b32decode(
        re.search(r'<code id="secret"[^>]*>([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")
    )
    codes = send_code(client, code_for(key), "second_factor_setup")
    return key, re.findall(r"<li><code>([a-z2-7]+)</code></li>", codes.text)


def test_the_test_helper_signs_in_through_django_otp(client, clinic):
    sign_in_verified(client, clinic.prescriber.user)
    assert client.get(reverse("my_calendar")).status_code == 200


def test_a_failed_passkey_check_counts_in_the_lockout_and_the_audit_trail(client, therapist, clock):
    TOTPDevice.objects.create(user=therapist, name="Phone", confirmed=True)
    sign_in(client, therapist)
    url = reverse("otp_webauthn:credential-authentication-complete")
    # Nothing begun (or a replayed answer): django-otp-webauthn refuses, and it counts.
    statuses = [client.post(url, REMOTE_ADDR=ADDRESS).status_code for _ in range(10)]
    assert statuses == [400] * 9 + [429]
    assert "_auth_user_id" not in client.session
    assert sign_in(client, therapist).status_code == 429
    assert audited(AuditAction.SECOND_FACTOR_FAILED) == ["passkey"] * 10
