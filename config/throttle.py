"""Rate limits kept in Django's cache: token URLs per address.

A fixed window per key (``cache.add`` starts it, ``cache.incr`` counts), which
is plenty for telling a calendar app's polling from someone guessing tokens.
The default LocMemCache counts per process; with several web processes set
CACHE_URL (Redis) so that they share the counts. Failed sign-ins are not
counted here but in the database, by django-axes (config/signin_lock.py).
"""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse


def client_address(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client wants it to be
    # unless a trusted proxy rewrites it, and then the proxy sets REMOTE_ADDR.
    return request.META.get("REMOTE_ADDR") or "unknown"


def _key(scope: str, who: str) -> str:
    return f"throttle:{scope}:{who}"


def hit(scope: str, who: str, window: int) -> int:
    """Count one more event for ``who`` in the current window; the count so far."""
    key = _key(scope, who)
    if cache.add(key, 1, timeout=window):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return 1


def token_rate_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """429 after TOKEN_RATE_LIMIT requests a minute from one address to the token URLs."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        seen = hit("token", client_address(request), 60)
        if seen > settings.TOKEN_RATE_LIMIT:
            response = HttpResponse(
                "Too many requests from this address. Try again in a minute.",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = "60"
            return response
        return view(request, *args, **kwargs)

    return wrapper
