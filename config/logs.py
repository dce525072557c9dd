"""Logging filters: what the logs keep of routine events, and what they never keep.

Imports nothing from Django: gunicorn's master process loads this module
(config/gunicorn.py) before any Django setting exists.
"""

import copy
import logging
import re

TOKEN_MARKER = "[token]"

# Where a path segment ends: the next separator, whitespace, or the quote that
# closes a quoted request line or referer ("GET /p/<token>/ HTTP/1.1",
# "https://clinic.example.org/p/<token>/"). A slash may come percent-encoded
# (a path inside a query string or a referer).
_SLASH = r"(?:/|%2F)"
_END = r"""(?=["']?(?:[/?#\s]|%2F|$))"""
# The project's token URLs (desk/urls.py, scheduler/urls.py), the whole
# segment after the prefix, whatever it holds: a live token with a typo or a
# suffix (/p/<token>x/, /calendars/<token>.ics/x) is still most of a live token.
# tests/test_logging.py fails when a URL with a token parameter is not covered.
_TOKEN_URLS = re.compile(
    # /p/<token>/ and /p/<token>/visits/<pk>.ics; /p/ alone is the entrance.
    rf"(?P<patient>{_SLASH}p{_SLASH})[^/?#\s]+?{_END}"
    # /calendars/<token>.ics; /calendars/mine/ is a page, not a token.
    rf"|(?P<feed>{_SLASH}calendars{_SLASH})(?!mine{_END})[^/?#\s]+?(?=(?:\.ics)?{_END})"
    # /w/<token>/: a waitlist offer's page (desk/urls.py).
    rf"|(?P<offer>{_SLASH}w{_SLASH})[^/?#\s]+?{_END}",
    re.IGNORECASE,
)


def redact_tokens(text: str) -> str:
    """``text`` with the token of every token URL in it replaced by ``[token]``.

    A token URL is the credential itself (whoever holds /p/<token>/ sees that
    patient's visits), so it has no place in a log, an access log included.
    """
    return _TOKEN_URLS.sub(
        lambda m: (m.group("patient") or m.group("feed") or m.group("offer")) + TOKEN_MARKER, text
    )


class RedactTokens(logging.Filter):
    """Token URLs out of every log record, whoever logged it; on every handler (settings.LOGGING).

    Django logs the path of every 4xx and 5xx (django.request, and
    django.security.csrf with the referer in its reason), runserver its
    request line (django.server), and gunicorn its access line and errors
    (config/gunicorn.py), each in the record's arguments, with the request in
    ``record.request``. The record leaves with the message already formatted
    and redacted, the traceback rendered and redacted, and a redacted copy of
    the request, so that no handler or formatter sees a live token.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: the handler reports it, as it would anyway
            return True
        record.msg, record.args = redact_tokens(message), ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            # Formatters print exc_text; the live exception would be printed again.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact_tokens(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_tokens(record.stack_info)
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "path_info"):
            record.request = _redacted_request(request)
        return True


def _redacted_request(request):
    """A copy of a Django request with token URLs out of its path and headers.

    A copy: the request is still being answered, and middleware after the log
    call (CSRF's refusal is logged on the way out) reads its real path.
    """
    clean = copy.copy(request)
    clean.path = redact_tokens(request.path)
    clean.path_info = redact_tokens(request.path_info)
    meta = {
        name: redact_tokens(value) if isinstance(value, str) else value
        for name, value in request.META.items()
    }
    clean.META = meta
    if hasattr(request, "environ"):
        clean.environ = meta
    return clean


class RefusalWithoutTraceback(logging.Filter):
    """A 403 is routine (a role opening another role's page): one line, not a traceback.

    Django logs a refused request with the PermissionDenied it raised; the
    traceback says nothing the line does not, and buries real errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True


def redact_on_every_handler() -> None:
    """Put ``RedactTokens`` on every handler a library added after LOGGING was applied.

    Django applies settings.LOGGING before it imports the apps, and some
    libraries add a handler of their own when imported (pyasn1, which
    webauthn imports, puts a stderr handler on its logger). Called once the
    apps are loaded (desk's AppConfig.ready), so that no handler writes a
    record the filter has not seen.
    """
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactTokens) for f in handler.filters):
                handler.addFilter(RedactTokens())
