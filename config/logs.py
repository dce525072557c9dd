"""Logging filters: what the logs keep of routine events."""

import logging


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
