"""Response headers Django does not set by default: Cache-Control, CSP (5.2 has none)."""

import time

from django.conf import settings
from django.utils import translation
from django.utils.cache import add_never_cache_headers


class NeverCacheMiddleware:
    """No response is kept by a browser's or a proxy's cache unless its view says it may be.

    Nearly every page shows patient data (the desk, a clinician's calendar, the
    patient page, feeds, the admin, even a 404 names what was asked for), and
    a page left out of caching rules is a page of PHI on a shared computer's
    disk. Django writes the headers (``add_never_cache_headers``: no-store,
    private, what ``never_cache`` and the admin use) but only on the views
    decorated; here they are the default. A response that may be cached (the
    favicon's redirect) carries its own Cache-Control and is left alone.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response


class ContentSecurityPolicyMiddleware:
    """Content-Security-Policy on every response: own scripts and styles only, no framing.

    The templates have no inline scripts, styles or handlers (tests check), so
    the policy needs no 'unsafe-inline'; the admin's own static files are "self" too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


class SessionRefreshMiddleware:
    """Idle sign-out without writing the session on every request.

    A session lasts SESSION_COOKIE_AGE from its last save. Django's
    SESSION_SAVE_EVERY_REQUEST turns that into an idle timeout at the cost of
    an UPDATE on every page; saving at most every SESSION_REFRESH_SECONDS
    keeps the idle timeout within that margin (29-30 minutes for 30) and
    saves the write on almost every request.
    """

    KEY = "_refreshed_at"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is not None and session.accessed and not session.is_empty():
            now = int(time.time())
            if now - session.get(self.KEY, 0) >= settings.SESSION_REFRESH_SECONDS:
                session[self.KEY] = now  # modified: SessionMiddleware saves it
        return response


class StaffLanguageMiddleware:
    """Every request starts in the staff's language (LANGUAGE_CODE), and ends there.

    Patients' pages switch to the patient's language once they know whose
    page it is (``desk.patient_page.link_patient``); without this, a worker
    thread would carry that language into the next request it serves.
    Nothing follows the browser's Accept-Language: staff pages stay English.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with translation.override(settings.LANGUAGE_CODE):
            return self.get_response(request)
