"""The calendar feeds (/calendars/<token>.ics): what calendar apps poll, not a page."""

from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, get_conditional_response
from django.utils.http import http_date
from django.views.decorators.http import require_safe

from config.throttle import token_rate_limited
from scheduler import tokens
from scheduler.feeds import Feed
from scheduler.models import TokenPurpose


@token_rate_limited
@require_safe
def calendar_feed(request: HttpRequest, token: str) -> HttpResponse:
    access = tokens.verify(token, TokenPurpose.CALENDAR_FEED)
    if access is None:
        # The same answer for a wrong and a revoked token: a guess learns nothing.
        raise Http404("No such calendar.")
    feed, now = Feed(access), timezone.now()
    etag, last_modified = feed.validators(now)
    response = HttpResponse(content_type="text/calendar; charset=utf-8")
    response["ETag"] = etag
    response["Last-Modified"] = http_date(last_modified.timestamp())
    # The URL is the secret and the feed holds patient data: no cache, shared or
    # the browser's, keeps a copy (no-store, private). Calendar apps keep the
    # events and the ETag in their own store, not an HTTP cache, so their
    # conditional polls still get the cheap 304.
    add_never_cache_headers(response)
    response["Content-Disposition"] = 'inline; filename="appointments.ics"'
    response["X-Robots-Tag"] = "noindex, nofollow"
    conditional = get_conditional_response(
        request, etag=etag, last_modified=int(last_modified.timestamp()), response=response
    )
    if conditional is not response:
        return conditional
    response.content = feed.render(now)
    return response
