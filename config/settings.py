"""Settings for the KAP scheduler, all read from the environment.

The defaults give the embedded demo: SQLite, django-q2's ORM broker, SMS and
email written to files under ``var/``. ``DEBUG`` is off unless asked for, and
then ``SECRET_KEY`` and ``ALLOWED_HOSTS`` are required.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.env import database_from_url, env, env_bool, env_int, env_list, env_networks

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not DEBUG:
    missing = [
        name
        for name, value in [("SECRET_KEY", SECRET_KEY), ("ALLOWED_HOSTS", ALLOWED_HOSTS)]
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            f"Production mode (DEBUG=0) needs {' and '.join(missing)} in the environment "
            "(or in a file named by <NAME>_FILE). For local development set DEBUG=1."
        )
else:
    # A fixed key is fine for a developer's machine only; production never reaches here.
    SECRET_KEY = SECRET_KEY or "insecure-development-key-do-not-use-in-production"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]

SITE_URL = (env("SITE_URL") or "http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
    "scheduler",
    "plans",
    "notifications",
    "desk",
    "waitlist",
    "questionnaires",
    "fhirapi",
    "billing",
]

MIDDLEWARE = [
    # Outermost, so that every answer gets it: refusals, redirects and 500s included.
    "config.middleware.NeverCacheMiddleware",
    # Staff's language on every request; a patient's page switches to theirs.
    "config.middleware.StaffLanguageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Whether the session passed the second step (django-otp), and no staff
    # page without it for those who need one (desk/second_factor.py).
    "django_otp.middleware.OTPMiddleware",
    "desk.second_factor.SecondFactorMiddleware",
    "config.middleware.SessionRefreshMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "scheduler.audit.AuditMiddleware",
    # Last, as axes asks: turns a sign-in refused by the lockout into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: embedded SQLite unless DATABASE_URL names a PostgreSQL server.
DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("SQLITE_PATH", str(VAR_DIR / "kap.sqlite3")),
            "OPTIONS": {
                # IMMEDIATE takes the write lock when a transaction begins, so a
                # booking's overlap check and its insert can never interleave
                # with another writer's (docs/architecture.md invariant 1 on SQLite).
                "transaction_mode": "IMMEDIATE",
                "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20),
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON;"
                ),
            },
            # Tests use a real file, not shared-cache memory, so that locking
            # behaves as in production when threads race for one slot; one file
            # per test process, so that two runs side by side do not collide.
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# axes first: a locked account or address is refused before any password is
# checked, whichever page signs in (config/signin_lock.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# The second factor (desk/second_factor.py): the name authenticator apps show
# beside the account, and no keys or recovery codes shown in the admin.
OTP_TOTP_ISSUER = env("SECOND_FACTOR_ISSUER", "KAP scheduler")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Passkeys (django-otp-webauthn) as a second factor only, never instead of the
# password (that would skip the lockout's per-account count), for this site's
# own address: SITE_URL names the relying party and the one allowed origin.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_RP_ID = urlsplit(SITE_URL).hostname
OTP_WEBAUTHN_RP_NAME = OTP_TOTP_ISSUER
OTP_WEBAUTHN_ALLOWED_ORIGINS = [SITE_URL]
# Browsers offer passkeys only to https pages and http://localhost. On any
# other plain-http address (the demo on 127.0.0.1) they offer none, and
# django-otp-webauthn's check that the origin is secure would stop every
# command (migrate included): it is silenced there, and only there.
SILENCED_SYSTEM_CHECKS = (
    [] if SITE_URL.startswith(("https://", "http://localhost")) else ["otp_webauthn.E031"]
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
USE_I18N = True
# Patients read their texts, emails and page in their own language (Patient.language);
# staff pages stay in LANGUAGE_CODE (no LocaleMiddleware: nothing follows the
# browser). A language is added with a line here and a catalogue in locale/.
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True
# Staff pages show clinic time; each clinic row carries its own zone, this is
# only the default for new clinics and for pages with no clinic in view.
TIME_ZONE = env("CLINIC_TIME_ZONE", "America/New_York")
CLINIC_TIME_ZONE = TIME_ZONE
# Defaults for new clinics: whose public holidays close them (scheduler.public_holidays).
CLINIC_COUNTRY = env("CLINIC_COUNTRY", "US")
CLINIC_SUBDIVISION = env("CLINIC_SUBDIVISION", "")
PHONE_REGION = env("PHONE_REGION", "US")
CURRENCY = env("CURRENCY", "USD")
# How far ahead visits can be booked; further is almost always a typo in the year.
BOOKING_HORIZON_DAYS = env_int("BOOKING_HORIZON_DAYS", 730)
# The waitlist (waitlist.offers): how many patients hold an offer of one freed
# time at once, and how long before a freed time it is no use offering any more.
WAITLIST_OFFERS_AT_ONCE = env_int("WAITLIST_OFFERS_AT_ONCE", 3)
WAITLIST_MIN_NOTICE_MINUTES = env_int("WAITLIST_MIN_NOTICE_MINUTES", 60)

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# Staff sign in at /login/; the home page sends each role to its own page.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# A patient's private link (/p/<token>/) stops working this long after it is
# issued: links travel by text and email, which are forwarded and kept for years.
PATIENT_LINK_DAYS = env_int("PATIENT_LINK_DAYS", 60)

# Background work: django-q2 on the ORM broker by default, Redis when REDIS_URL is set.
REDIS_URL = env("REDIS_URL")
Q_CLUSTER = {
    "name": "kap",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Messaging transports (see notifications/transports.py). SMS_BACKEND is an
# alias (console, file, locmem, twilio) or a dotted path to an SMSBackend
# subclass; the demo writes texts to files under var/sms/ so they survive.
SMS_BACKEND = env("SMS_BACKEND", "file")
SMS_FILE_PATH = Path(env("SMS_FILE_PATH", str(VAR_DIR / "sms")))
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER", "")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID", "")
TWILIO_API_BASE = env("TWILIO_API_BASE", "")
TWILIO_TIMEOUT = env_int("TWILIO_TIMEOUT", 10)

# The clinic's name as texts show it, when its full name would say what it
# treats ("... Ketamine Center"): every text is checked for treatment words.
SMS_CLINIC_NAME = env("SMS_CLINIC_NAME", "")

# Reminders (notifications/). docs/rules.md's US defaults; every one is a choice
# the clinic may change, per patient where the patient agreed to it.
QUIET_HOURS_START = env("QUIET_HOURS_START", "21:00")
QUIET_HOURS_END = env("QUIET_HOURS_END", "08:00")
# A message due in quiet hours is planned this long before they begin, so a
# dispatch pass that runs a few minutes late still sends it in allowed time.
QUIET_HOURS_MARGIN_MINUTES = env_int("QUIET_HOURS_MARGIN_MINUTES", 15)
SMS_DAILY_CAP = env_int("SMS_DAILY_CAP", 1)
SMS_WEEKLY_CAP = env_int("SMS_WEEKLY_CAP", 3)
# A reminder caught up at booking (short notice) is dropped when another
# message for the visit goes within this many hours anyway.
REMINDER_MERGE_HOURS = env_int("REMINDER_MERGE_HOURS", 6)
# Sends per second per sender (a US long code takes about 1); 0 = no pacing.
SMS_SEND_RATE = float(env("SMS_SEND_RATE", "1") or 1)
EMAIL_SEND_RATE = float(env("EMAIL_SEND_RATE", "5") or 5)
MESSAGE_MAX_ATTEMPTS = env_int("MESSAGE_MAX_ATTEMPTS", 6)
MESSAGE_RETRY_SECONDS = env_int("MESSAGE_RETRY_SECONDS", 60)  # doubles per attempt
MESSAGE_RETRY_MAX_SECONDS = env_int("MESSAGE_RETRY_MAX_SECONDS", 3600)
# A claim older than this belongs to a dispatcher that died. A batch stops
# handing messages over once its claim is half this old (and is no larger than
# pacing can send in that time), so keep it well above DISPATCH_FLUSH_SECONDS +
# TWILIO_TIMEOUT: the other half is the margin for one slow send and for clocks
# that disagree between machines.
MESSAGE_CLAIM_LEASE_SECONDS = env_int("MESSAGE_CLAIM_LEASE_SECONDS", 300)
# Messages claimed and checked together: each batch costs a handful of queries
# whatever its size. Pacing makes batches smaller (see notifications/dispatch.py).
DISPATCH_BATCH_SIZE = env_int("DISPATCH_BATCH_SIZE", 500)
# While a batch sends, its outcomes are written (and the rows still to send
# re-read: visit, consent, our claim) at least this often, in seconds or sends.
DISPATCH_FLUSH_SECONDS = float(env("DISPATCH_FLUSH_SECONDS", "2") or 2)
DISPATCH_FLUSH_MESSAGES = env_int("DISPATCH_FLUSH_MESSAGES", 250)
# The schedule starts a pass every minute; a pass stops claiming after this long.
DISPATCH_PASS_SECONDS = env_int("DISPATCH_PASS_SECONDS", 50)
TWILIO_WEBHOOK_MAX_BYTES = env_int("TWILIO_WEBHOOK_MAX_BYTES", 16384)

# Calendars (scheduler/calendars.py, scheduler/external_calendars.py).
# Feed window: history a clinician may look back on, and the bookable future.
CALENDAR_FEED_PAST_DAYS = env_int("CALENDAR_FEED_PAST_DAYS", 90)
CALENDAR_FEED_FUTURE_DAYS = env_int("CALENDAR_FEED_FUTURE_DAYS", 548)
# Cancelled visits stay as STATUS:CANCELLED this long, so that subscribed
# clients that poll rarely still see the cancellation and drop the event.
CALENDAR_CANCELLED_KEEP_DAYS = env_int("CALENDAR_CANCELLED_KEEP_DAYS", 30)
# What feeds ask clients to poll at (REFRESH-INTERVAL, X-PUBLISHED-TTL);
# Google ignores it, Apple and Outlook honour it within their own limits.
CALENDAR_FEED_REFRESH_MINUTES = env_int("CALENDAR_FEED_REFRESH_MINUTES", 60)
EXTERNAL_CALENDAR_TIMEOUT = env_int("EXTERNAL_CALENDAR_TIMEOUT", 10)
EXTERNAL_CALENDAR_MAX_BYTES = env_int("EXTERNAL_CALENDAR_MAX_BYTES", 2 * 1024 * 1024)
EXTERNAL_CALENDAR_MAX_BLOCKS = env_int("EXTERNAL_CALENDAR_MAX_BLOCKS", 20_000)
# A clinician's calendar address must not make the server read inside its own
# network (SSRF): only public addresses are read, unless their network is listed
# here, comma-separated ("10.20.0.0/16" for a calendar server on the clinic's
# intranet; dev.py's demo lists loopback, where it serves its sample calendar).
# Link-local addresses (cloud metadata) stay refused even when listed.
EXTERNAL_CALENDAR_ALLOWED_NETWORKS = env_networks("EXTERNAL_CALENDAR_ALLOWED_NETWORKS")

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = Path(env("EMAIL_FILE_PATH", str(VAR_DIR / "mail")))
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Clinic <appointments@localhost>")

# Every handler carries RedactTokens: a token URL (/p/<token>/, /calendars/<token>.ics)
# is the credential itself and never reaches a log (config/logs.py). Django's own
# handlers on "django" (a console in DEBUG, mail to ADMINS) and "django.server"
# (runserver's request lines) would not, so those loggers hand their records to
# the root handler instead.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "redact_tokens": {"()": "config.logs.RedactTokens"},
        "refusal_without_traceback": {"()": "config.logs.RefusalWithoutTraceback"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["refusal_without_traceback"]},
        # The SDK logs every request at INFO, phone numbers in lookups included.
        "twilio.http_client": {"level": "WARNING"},
    },
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS") or [SITE_URL]
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Scripts and styles from our own static files only (no inline ones anywhere),
# no plugins, and no framing by any site (config.middleware).
CONTENT_SECURITY_POLICY = env(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
# Idle staff sessions end: the age restarts with every request (SAVE_EVERY_REQUEST).
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 30 * 60)
# Idle timeout: config.middleware.SessionRefreshMiddleware refreshes the session
# at most once a minute rather than on every request.
SESSION_REFRESH_SECONDS = env_int("SESSION_REFRESH_SECONDS", 60)
X_FRAME_OPTIONS = "DENY"
# A form post bigger than this is refused before any view sees it (the largest
# real one, the admin's visit form, is a few kilobytes).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 1000)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

# Rate limits (config/throttle.py), counted in the cache. LocMemCache counts per
# process; with several web processes point CACHE_URL at Redis so they share.
CACHE_URL = env("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Requests a minute from one address to /calendars/<token>.ics and /p/<token>/.
TOKEN_RATE_LIMIT = env_int("TOKEN_RATE_LIMIT", 30)
# The FHIR API (docs/fhir.md): requests a minute per client, and how long a
# bearer token from /fhir/auth/token lives (SMART asks for minutes, not hours).
FHIR_RATE_LIMIT = env_int("FHIR_RATE_LIMIT", 600)
FHIR_TOKEN_MINUTES = env_int("FHIR_TOKEN_MINUTES", 5)

# The sign-in lockout (config/signin_lock.py, django-axes), counted in the
# database so that every web process shares it: failed sign-ins (a wrong
# password, or a wrong second-factor code) per account and per address, within
# LOGIN_LOCKOUT_SECONDS of each other, lock for LOGIN_LOCKOUT_SECONDS after the
# last. The address's limit is higher: one office behind NAT is one address.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 50)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60)
AXES_HANDLER = "config.signin_lock.SignInLockHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # SignInLockHandler reads them in this order
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = "config.signin_lock.lockout_time"  # LOGIN_LOCKOUT_SECONDS
# Tries while locked are refused without counting: the lock ends when the page says.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_USERNAME_CALLABLE = "config.signin_lock.account_name"
# The same address as every other limit: REMOTE_ADDR, set by a trusted proxy.
AXES_CLIENT_IP_CALLABLE = "config.signin_lock.client_address"
AXES_LOCKOUT_CALLABLE = "desk.signin.locked_out"
# Kept out of axes' log lines and its record of attempts' form data.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "code"]
