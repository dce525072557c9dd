"""gunicorn's settings for this project: ``gunicorn -c config/gunicorn.py config.wsgi``.

What every deployment needs; workers, the bind address and the log files stay
on the command line (``--access-logfile``, ``--error-logfile``). gunicorn's own
logs sit outside Django's LOGGING: its access line has the request line, the
path and the referer, and its error log the path of a request it failed.
Both go through the same token redaction as Django's logs (config/logs.py).
"""

from gunicorn import glogging

from config.logs import RedactTokens


class RedactingLogger(glogging.Logger):
    """gunicorn's logger with token URLs redacted in the access and error logs.

    A filter on the handlers, not a rewrite of ``atoms()``: it covers any
    ``access_log_format`` (request line, path, referer, headers) and the error
    log alike, whichever handlers the command line, syslog or a
    ``logconfig_dict`` gave them. ``setup`` runs again on reload (SIGHUP).
    """

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, RedactTokens) for f in handler.filters):
                    handler.addFilter(RedactTokens())


logger_class = RedactingLogger
