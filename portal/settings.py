"""Django settings of the school portal.

Everything is derived from ``TODA_HOME`` like the rest of the platform. The portal's own data
(users, sessions, audit log, case-meeting entries, incidents) is in its own database:
SQLite at ``$TODA_HOME/portal/portal.sqlite3`` by default. For a server database set
``TODA_PORTAL_DB_ENGINE`` (e.g. ``django.db.backends.postgresql``) with ``TODA_PORTAL_DB_NAME``,
``_USER``, ``_PASSWORD``, ``_HOST``, ``_PORT``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF

from toda_platform.settings import Paths

TODA_PATHS = Paths.from_env()
PORTAL_HOME = TODA_PATHS.home / "portal"
BASE_DIR = Path(__file__).resolve().parent


SECRET_KEY_FILE = TODA_PATHS.secrets / "portal_secret.key"


def _secret_key() -> str:
    """From ``TODA_PORTAL_SECRET_KEY``, else the key file (``toda portal`` creates it, mode 0600).
    Without either, a random key for this process only (tests): sessions end with the process."""
    if os.environ.get("TODA_PORTAL_SECRET_KEY"):
        return os.environ["TODA_PORTAL_SECRET_KEY"]
    if SECRET_KEY_FILE.exists():
        return SECRET_KEY_FILE.read_text().strip()
    return secrets.token_urlsafe(50)


SECRET_KEY = _secret_key()
DEBUG = os.environ.get("TODA_PORTAL_DEBUG") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("TODA_PORTAL_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
HTTPS = os.environ.get("TODA_PORTAL_HTTPS") == "1"  # behind TLS: secure cookies and HSTS

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "portal.apps.PortalConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",  # every view needs a login …
    "portal.middleware.CurrentUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
        "portal.views.portal_context",
    ]},
}]

if os.environ.get("TODA_PORTAL_DB_ENGINE"):
    DATABASES = {"default": {
        "ENGINE": os.environ["TODA_PORTAL_DB_ENGINE"],
        **{k: os.environ.get(f"TODA_PORTAL_DB_{k}", "") for k in ("NAME", "USER", "PASSWORD", "HOST", "PORT")},
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": PORTAL_HOME / "portal.sqlite3",
        # IMMEDIATE: a writer takes the lock at BEGIN, so audit appends never interleave
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        # the test runner's database is a file, not SQLite's shared in-memory one: the browser
        # tests' live server then gives each thread its own connection, as in production (a
        # shared connection failed a session save while two chart requests ran at once). One
        # file per checkout (pytest-xdist adds a suffix per worker)
        "TEST": {"NAME": str(Path(tempfile.gettempdir()) / (
            "toda_portal_test_" + hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:10] + ".sqlite3"))},
    }}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# a modern, memory-hard hasher first; the others only verify old hashes
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# login throttling (django-axes): 5 wrong passwords lock the account for 30 minutes
AXES_FAILURE_LIMIT = int(os.environ.get("TODA_PORTAL_LOCKOUT_FAILURES", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=30)
AXES_LOCKOUT_PARAMETERS = ["username"]
# not by address: a school's staff share one address on the city network (LGWAN), and one
# mistyping teacher must not lock out the whole school
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "portal/locked.html"
AXES_VERBOSE = False

# sessions: 30 minutes idle, gone when the browser closes
SESSION_COOKIE_AGE = 30 * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
CSRF_COOKIE_HTTPONLY = True
if HTTPS:
    SECURE_HSTS_SECONDS = 31536000
    SECURE_SSL_REDIRECT = True

# headers
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {
    "default-src": [SELF], "script-src": [SELF], "style-src": [SELF], "img-src": [SELF],
    "font-src": [SELF], "connect-src": [SELF], "object-src": [NONE], "base-uri": [NONE],
    "frame-ancestors": [NONE], "form-action": [SELF],
}}

LANGUAGE_CODE = "ja"
TIME_ZONE = "Asia/Tokyo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True  # served from the package: nothing to collect, no CDN

# never a name in a log line: only the request line (pseudonymous ids) and errors
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING"},
                "portal": {"handlers": ["console"], "level": "INFO"}},
}
