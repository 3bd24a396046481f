"""The one settings file. Every value comes from the environment; docker/.env.example lists them all.

Safe defaults: DEBUG is off unless the run command turns it on, there is no fallback SECRET_KEY outside DEBUG, and
CSRF is never disabled. With neither DATABASE_URL nor REDIS_URL set, the app runs on its embedded default: SQLite and
a Celery broker on kombu's file-system transport, both under var/.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of true/false/1/0/yes/no/on/off, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


DEBUG = env_bool("DEBUG", False)
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if not DEBUG and (len(key) < 50 or key.startswith("django-insecure-") or len(set(key)) < 5):
            raise ImproperlyConfigured(
                "SECRET_KEY is too weak for production: use at least 50 random characters, "
                "for example from `python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
            )
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Production needs a long random SECRET_KEY in the environment "
            "(`make run` sets DEBUG=true and keeps a generated development key under var/)."
        )
    # Development only: a random key kept on this machine, never a key shipped in the code.
    path = VAR_DIR / "dev_secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    # Only for its templates and static files: the API docs page loads Swagger UI from this app's own static files
    # (shipped inside the locked django-ninja package), never from a CDN.
    "ninja",
    "annotate",
    "judges",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Above everything that reads the body: refuses a body larger than its path takes (by Content-Length, before
    # Django parses and spools a multipart upload) and form fields that are not text (NUL, lone surrogates).
    "annotate.guards.RequestGuardMiddleware",
    # A database outage (PostgreSQL restarting) answers 503 with a retry message; every layer below may query.
    "annotate.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "annotate.http.VaryOnHtmxMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into its 429 response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "annotate.urls"
WSGI_APPLICATION = "annotate.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------------------------
# DATABASE_URL switches to PostgreSQL (production and tests). The embedded default is SQLite under var/.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if env_bool("DB_PREPARED_STATEMENTS", True):
        # Parameters bound by the server, and a statement run five times on a connection prepared there: PostgreSQL
        # then reuses its plan instead of parsing and planning it again. Planning was over a tenth of the annotator's
        # submit round trip (five statements, each planned anew). Off behind a pooler that cannot keep prepared
        # statements per client (PgBouncer in transaction mode before 1.21, or with max_prepared_statements = 0).
        DATABASES["default"]["OPTIONS"] = {
            **DATABASES["default"].get("OPTIONS", {}),
            "server_side_binding": True,
            "prepare_threshold": 5,
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "annotate.sqlite3"),
            # The web process and the Celery worker share the file: WAL and IMMEDIATE keep writers from failing.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ----------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
# A hung Redis (a frozen process, a network partition) must cost a request one short wait, not redis-py's default of
# none at all: the cache and session client give up after these many milliseconds to connect and to answer, and then
# a circuit breaker bypasses Redis for REDIS_BREAKER_SECONDS (per process; annotate/cache.py), during which sessions,
# rate limits and progress fall back as they do when Redis is down. /healthz shows Redis latency and the breaker.
REDIS_CONNECT_TIMEOUT_MS = env_int("REDIS_CONNECT_TIMEOUT_MS", 500, minimum=1)
REDIS_TIMEOUT_MS = env_int("REDIS_TIMEOUT_MS", 500, minimum=1)
REDIS_BREAKER_SECONDS = env_int("REDIS_BREAKER_SECONDS", 10, minimum=1)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "annotate.cache.BreakerRedisCache",
            "LOCATION": REDIS_URL,
            # JSON, never pickle (sessions and anything derived from user input pass through this cache). The
            # prefix keeps entries written by the pickling serializer of earlier versions from ever being read.
            "OPTIONS": {
                "serializer": "annotate.cache.JSONSerializer",
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_MS / 1000,
                "socket_timeout": REDIS_TIMEOUT_MS / 1000,
            },
            "KEY_PREFIX": "json",
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # Seconds before Redis redelivers an unacknowledged task (acks_late) whose worker died.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    }
else:
    CACHES = {
        "default": {
            # Django's file cache with JSON files instead of pickles.
            "BACKEND": "annotate.cache.JSONFileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
    _broker_dir = VAR_DIR / "celery" / "broker"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _control_dir = VAR_DIR / "celery" / "control"
    for _folder in (_broker_dir, _processed_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_processed_dir),
        # Exchange tables too (kombu's default is ./control, in whatever directory the process started).
        "control_folder": str(_control_dir),
        "store_processed": False,
    }

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "assignments-expire": {
        "task": "annotate.tasks.assignments_expire",
        "schedule": env_int("ASSIGNMENT_SWEEP_SECONDS", 60, minimum=5),
    },
    # ANALYZEs the hot tables where autovacuum is off or behind (annotate.dbstats; PostgreSQL only).
    "statistics-refresh": {
        "task": "annotate.tasks.statistics_refresh",
        "schedule": env_int("STATISTICS_REFRESH_SECONDS", 60, minimum=5),
    },
    # Re-enqueues the chunks of judge runs that stopped progressing (a worker died mid-run).
    "judge-runs-reconcile": {
        "task": "judges.tasks.judge_runs_reconcile",
        "schedule": env_int("JUDGE_RECONCILE_SECONDS", 30, minimum=5),
    },
}

# --- Auth -----------------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sessions are read from the cache (Redis in production) and written through to the database, so a request
# costs no session query and a cache outage loses no session (annotate.sessions: Django's cached_db store, with
# every cache call but logout's made best effort, so that labeling goes on while Redis is down).
SESSION_ENGINE = "annotate.sessions"
# Login throttling (annotate/logins.py). Per client address (django-axes): after AXES_FAILURE_LIMIT failed logins
# from one address, whatever the usernames, that address is refused (HTTP 429) until AXES_COOLOFF_MINUTES pass
# without another failure. Per username, from all addresses together: after LOGIN_SLOWDOWN_AFTER failures the next
# attempt waits a delay that doubles with each failure, up to LOGIN_SLOWDOWN_MAX_SECONDS; a browser that logged into
# the account before skips the wait. Nobody can lock the owner out; ASVS 2.2.1 asks for at most 100 failures an hour
# per account, and the delay allows well under that. A success does not reset an address's count (an attacker's
# own account must not be a reset button).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 20, minimum=1)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "annotate.logins.client_ip"
AXES_COOLOFF_MESSAGE = "Too many failed logins from your address: try again in a few minutes."
LOGIN_SLOWDOWN_AFTER = env_int("LOGIN_SLOWDOWN_AFTER", 5, minimum=1)
LOGIN_SLOWDOWN_MAX_SECONDS = env_int("LOGIN_SLOWDOWN_MAX_SECONDS", 60, minimum=1)
LOGIN_DEVICE_COOKIE_DAYS = env_int("LOGIN_DEVICE_COOKIE_DAYS", 180, minimum=1)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# People (annotate.invites, annotate.people): how long an invite link and a set-password link stay valid. Both are
# single use. Links are shown to the lead or staff member who made them, and e-mailed too when EMAIL_HOST is set.
INVITE_EXPIRY_DAYS = env_int("INVITE_EXPIRY_DAYS", 7, minimum=1)
PASSWORD_RESET_TIMEOUT = 3600 * env_int("PASSWORD_RESET_HOURS", 72, minimum=1)
# Django 6's MAILERS (the EMAIL_* settings are deprecated); only the env variables keep their familiar names.
EMAIL_CONFIGURED = bool(env_str("EMAIL_HOST"))
if EMAIL_CONFIGURED:
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": env_str("EMAIL_HOST"),
                "port": env_int("EMAIL_PORT", 587, minimum=1),
                "username": env_str("EMAIL_HOST_USER"),
                "password": env_str("EMAIL_HOST_PASSWORD"),
                "use_tls": env_bool("EMAIL_USE_TLS", True),
                "timeout": 10,
            },
        }
    }
# Without a server nothing is sent: the links are shown on the page instead.
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "annotate@localhost")

# --- Security -------------------------------------------------------------------------------------------------
# HTTPS is assumed outside DEBUG (TLS ends at a proxy that sets X-Forwarded-Proto). Plain-HTTP test servers say
# HTTPS=false.
HTTPS = env_bool("HTTPS", not DEBUG)
# Behind a reverse proxy (nginx, docker/nginx.conf): trust its X-Forwarded-Proto, and take the client's address for
# login throttling from X-Forwarded-For, PROXY_COUNT entries from the right (one per proxy that appends to it).
BEHIND_PROXY = env_bool("BEHIND_PROXY", HTTPS)
PROXY_COUNT = env_int("PROXY_COUNT", 1, minimum=1)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
SECURE_SSL_REDIRECT = HTTPS
# Health checks come from inside the network over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# security.W021 asks for HSTS preload. Joining the browsers' preload list is a lasting decision for the owner of the
# whole domain, not a default an app should make: set SECURE_HSTS_PRELOAD=true to opt in.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # htmx reads no cookie: the token is set once on <body> (hx-headers).
# Browsers keep cookies per host, not per port: two demos on one machine would overwrite each other's session and CSRF
# cookies (each logging the other out), so `make run` names them after its port.
SESSION_COOKIE_NAME = env_str("SESSION_COOKIE_NAME", "sessionid") or "sessionid"
CSRF_COOKIE_NAME = env_str("CSRF_COOKIE_NAME", "csrftoken") or "csrftoken"
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1024)
# An enforced policy without inline script or style: user text can never become code.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# --- Static files ---------------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Locale ---------------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- The app --------------------------------------------------------------------------------------------------
# How long an item stays reserved for the annotator who opened it, in seconds.
ASSIGNMENT_LEASE_SECONDS = env_int("ASSIGNMENT_LEASE_SECONDS", 600, minimum=30)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Getting data in: imports, the token API, the daily production sample -------------------------------------
# Largest item or label file accepted, in bytes (browser upload, command and the stored upload alike).
IMPORT_MAX_FILE_BYTES = env_int("IMPORT_MAX_FILE_BYTES", 2 * 1024**3, minimum=1024)
# Longest text field (input, an output, a note, metadata as JSON) of one row, in characters.
IMPORT_MAX_FIELD_CHARS = env_int("IMPORT_MAX_FIELD_CHARS", 200_000, minimum=100)
# Most rows in one file or one API request's batch body.
IMPORT_MAX_ROWS = env_int("IMPORT_MAX_ROWS", 5_000_000, minimum=1)
# Uploads up to this size are checked and imported within the request; larger ones go to the Celery worker and the
# page shows a progress bar.
IMPORT_SYNC_MAX_BYTES = env_int("IMPORT_SYNC_MAX_BYTES", 1024 * 1024, minimum=0)
# Browser uploads a user may start per hour (the queue must not be floodable).
IMPORT_UPLOADS_PER_HOUR = env_int("IMPORT_UPLOADS_PER_HOUR", 30, minimum=1)
# Where uploaded files wait between preview and import. Never served; web and worker must share it.
IMPORT_UPLOAD_DIR = Path(env_str("IMPORT_UPLOAD_DIR", str(VAR_DIR / "uploads")))
# An upload not confirmed within this many seconds is deleted, and its job marked expired.
IMPORT_UPLOAD_TTL_SECONDS = env_int("IMPORT_UPLOAD_TTL_SECONDS", 24 * 3600, minimum=60)
# Requests per minute one API token may make; more get 429.
API_RATE_LIMIT = env_int("API_RATE_LIMIT", 600, minimum=1)
# Most items, labels or records in one API request (more: 413).
API_MAX_BATCH = env_int("API_MAX_BATCH", 5_000, minimum=1)
# Largest body of one such batch (POST /api/v1/projects/<slug>/items, labels, samples; more: 413 before it is read).
# 5,000 items of 1.4 kB each are 6.9 MB: the default takes API_MAX_BATCH items of up to 3.3 kB on average. Every
# other path keeps DATA_UPLOAD_MAX_MEMORY_SIZE. The reverse proxy has its own limit for these paths (docker/nginx/).
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
# How often beat looks for projects whose daily sample is due (each project's own hour; taking it is idempotent).
SAMPLE_CHECK_SECONDS = env_int("SAMPLE_CHECK_SECONDS", 3600, minimum=60)

CELERY_BEAT_SCHEDULE["samples-take-due"] = {
    "task": "annotate.tasks.samples_take_due",
    "schedule": SAMPLE_CHECK_SECONDS,
}
# Recomputes the stored agreement report of every project whose labels changed since (debounced by this period).
CELERY_BEAT_SCHEDULE["agreement-reports-refresh"] = {
    "task": "annotate.tasks.agreement_reports_refresh",
    "schedule": env_int("AGREEMENT_REFRESH_SECONDS", 60, minimum=5),
}
# How often beat sends again the import jobs no worker is on (a worker killed mid-import, a message lost while the
# broker was down); also how long a waiting job waits before its message counts as lost.
IMPORT_RECONCILE_SECONDS = env_int("IMPORT_RECONCILE_SECONDS", 30, minimum=1)
CELERY_BEAT_SCHEDULE["import-jobs-reconcile"] = {
    "task": "annotate.tasks.import_jobs_reconcile",
    "schedule": IMPORT_RECONCILE_SECONDS,
}
# Adds the labels created since the last pass to the stored per-day counts that the dashboard's throughput reads.
CELERY_BEAT_SCHEDULE["throughput-counts-refresh"] = {
    "task": "annotate.tasks.throughput_counts_refresh",
    "schedule": env_int("THROUGHPUT_REFRESH_SECONDS", 60, minimum=5),
}
CELERY_BEAT_SCHEDULE["import-uploads-expire"] = {
    "task": "annotate.tasks.import_uploads_expire",
    "schedule": 3600,
}

# --- Judges: LLM endpoints, prices, limits -------------------------------------------------------------------
# Endpoints are configuration, never user input: a JSON list of {"name", "base_url", "key_env"} plus optional
# "structured_outputs" (default true), "max_concurrency" (8), "rpm" (0: no limit), "timeout" (JUDGE_TIMEOUT_SECONDS)
# and "max_tokens_param" ("max_tokens" or "max_completion_tokens"). key_env names the environment variable holding
# the key; the key itself never enters settings, the database, logs or pages. A built-in "standin" endpoint points at
# the loopback stand-in server (python -m judges.standin).
JUDGE_ALLOWED_HOSTS = env_list("JUDGE_ALLOWED_HOSTS", ["api.openai.com", "127.0.0.1", "localhost"])
# Hosts that may be reached over plain http (a vLLM or Ollama beside the app); every other host needs https.
JUDGE_HTTP_HOSTS = env_list("JUDGE_HTTP_HOSTS", ["127.0.0.1", "localhost"])
JUDGE_TIMEOUT_SECONDS = env_int("JUDGE_TIMEOUT_SECONDS", 60, minimum=1)


def _judge_endpoints() -> list[dict[str, object]]:
    import json
    import re
    from urllib.parse import urlsplit

    raw = env_str(
        "JUDGE_ENDPOINTS",
        '[{"name": "openai", "base_url": "https://api.openai.com/v1", "key_env": "OPENAI_API_KEY", '
        '"max_concurrency": 8, "rpm": 500}]',
    )
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ImproperlyConfigured("JUDGE_ENDPOINTS must be a JSON list of endpoint objects") from None
    if not isinstance(parsed, list):
        raise ImproperlyConfigured("JUDGE_ENDPOINTS must be a JSON list of endpoint objects")
    known = {
        "name",
        "base_url",
        "key_env",
        "structured_outputs",
        "max_concurrency",
        "rpm",
        "timeout",
        "max_tokens_param",
    }
    names: set[str] = set()
    for n, endpoint in enumerate(parsed):
        if not isinstance(endpoint, dict) or not {"name", "base_url"} <= endpoint.keys():
            raise ImproperlyConfigured(f"JUDGE_ENDPOINTS[{n}] needs at least a name and a base_url")
        if unknown := set(endpoint) - known:
            raise ImproperlyConfigured(f"JUDGE_ENDPOINTS[{n}] has unknown keys: {', '.join(sorted(unknown))}")
        name = str(endpoint["name"])
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name) or name in ("standin", "recorded") or name in names:
            raise ImproperlyConfigured(
                f"JUDGE_ENDPOINTS[{n}]: {name!r} must be a unique lowercase slug, not 'standin' or 'recorded'"
            )
        names.add(name)
        url = urlsplit(str(endpoint["base_url"]))
        host = (url.hostname or "").lower()
        if url.scheme not in {"http", "https"} or host not in JUDGE_ALLOWED_HOSTS or url.username or url.password:
            raise ImproperlyConfigured(
                f"JUDGE_ENDPOINTS[{n}] ({name}): the base_url must be http(s), without credentials, on a host "
                f"listed in JUDGE_ALLOWED_HOSTS"
            )
        if url.scheme == "http" and host not in JUDGE_HTTP_HOSTS:
            raise ImproperlyConfigured(f"JUDGE_ENDPOINTS[{n}] ({name}): {host} is not in JUDGE_HTTP_HOSTS; use https")
        if endpoint.get("max_tokens_param", "max_tokens") not in {"max_tokens", "max_completion_tokens"}:
            raise ImproperlyConfigured(f"JUDGE_ENDPOINTS[{n}]: max_tokens_param is max_tokens or max_completion_tokens")
    return parsed


JUDGE_ENDPOINTS = _judge_endpoints()
# The stand-in model server (judges/standin.py) on loopback: `make run` starts it when OPENAI_API_KEY is not set.
JUDGE_STANDIN_PORT = env_int("JUDGE_STANDIN_PORT", 8765, minimum=1)
JUDGE_STANDIN_CONCURRENCY = env_int("JUDGE_STANDIN_CONCURRENCY", 32, minimum=1)
JUDGE_STANDIN_RPM = env_int("JUDGE_STANDIN_RPM", 0, minimum=0)
JUDGE_STANDIN_TIMEOUT_SECONDS = env_int("JUDGE_STANDIN_TIMEOUT_SECONDS", 30, minimum=1)


def _judge_prices() -> dict[str, tuple[float, float]]:
    import json

    # USD per 1M tokens (input, output), as OpenAI lists them; override or extend with JUDGE_PRICES.
    prices = {
        "gpt-4o-2024-08-06": (2.50, 10.00),
        "gpt-4o-2024-11-20": (2.50, 10.00),
        "gpt-4o-mini-2024-07-18": (0.15, 0.60),
        "gpt-4.1-2025-04-14": (2.00, 8.00),
        "gpt-4.1-mini-2025-04-14": (0.40, 1.60),
        "gpt-4.1-nano-2025-04-14": (0.10, 0.40),
    }
    raw = env_str("JUDGE_PRICES")
    if raw:
        try:
            extra = json.loads(raw)
            prices |= {str(model): (float(p["input"]), float(p["output"])) for model, p in extra.items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ImproperlyConfigured(
                'JUDGE_PRICES must be JSON like {"model-2024-01-01": {"input": 2.5, "output": 10}} (USD per 1M tokens)'
            ) from None
    return prices


JUDGE_PRICES = _judge_prices()
# The list prices of the models whose recorded LLMBar answers the demo replays (judges/recorded.py), USD per 1M tokens
# (input, output), as their providers published them on JUDGE_RECORDED_PRICES_AS_OF: OpenAI's price list for the two
# GPT models, Vertex AI's per-character price for PaLM 2 at four characters a token, Together AI's serverless price
# for Llama 2 70B chat. Falcon 180B chat had no public per-token price, so no cost is shown for it. Used where
# JUDGE_PRICES has no price for the model.
JUDGE_RECORDED_PRICES_AS_OF = "2023-11-06"
JUDGE_RECORDED_PRICES = {
    "gpt-4-0613": (30.00, 60.00),
    "gpt-3.5-turbo-0301": (1.50, 2.00),
    "text-bison-001": (1.00, 2.00),
    "llama-2-70b-chat": (0.90, 0.90),
}
# Retries of 429, 5xx, timeouts and connection errors: attempts per call, exponential backoff with full jitter from
# the base up to the cap, and the longest Retry-After honoured.
JUDGE_MAX_ATTEMPTS = env_int("JUDGE_MAX_ATTEMPTS", 6, minimum=1)
JUDGE_BACKOFF_BASE_MS = env_int("JUDGE_BACKOFF_BASE_MS", 500, minimum=1)
JUDGE_BACKOFF_MAX_MS = env_int("JUDGE_BACKOFF_MAX_MS", 30_000, minimum=1)
JUDGE_RETRY_AFTER_MAX_SECONDS = env_int("JUDGE_RETRY_AFTER_MAX_SECONDS", 60, minimum=0)
# A concurrency slot held by a worker that died comes back after the call timeout plus this grace.
JUDGE_SLOT_GRACE_SECONDS = env_int("JUDGE_SLOT_GRACE_SECONDS", 5, minimum=1)
# Items per Celery task; each task runs its calls in a thread pool as large as the endpoint's concurrency limit.
JUDGE_CHUNK_SIZE = env_int("JUDGE_CHUNK_SIZE", 100, minimum=1)
JUDGE_MAX_THREADS = env_int("JUDGE_MAX_THREADS", 64, minimum=1)
# A run whose verdicts have not moved for this long gets its chunks re-enqueued by the reconciler; a chunk whose
# worker has not reported for this long is taken over. Live workers report every few seconds.
JUDGE_STALE_SECONDS = env_int("JUDGE_STALE_SECONDS", 90, minimum=3)
# A chunk claimed this many times without finishing fails its run (a bug, not a dead worker).
JUDGE_CHUNK_MAX_ATTEMPTS = env_int("JUDGE_CHUNK_MAX_ATTEMPTS", 5, minimum=1)
# Judge runs one user may start per hour (the task queue must not be floodable).
JUDGE_RUNS_PER_HOUR = env_int("JUDGE_RUNS_PER_HOUR", 60, minimum=1)
# A chunk task also takes further queued chunks of its run while its thread pool has room, for this many seconds;
# then it finishes what it holds, so that a worker's warm shutdown never waits long.
JUDGE_TASK_PULL_SECONDS = env_int("JUDGE_TASK_PULL_SECONDS", 30, minimum=0)

# --- The daily monitor (judges/monitor.py) --------------------------------------------------------------------
# Once a day, after this local hour, beat judges the previous day's production records of every monitored criterion
# with its chosen judge version; it looks every MONITOR_CHECK_SECONDS (a day already computed is not sent again).
MONITOR_HOUR = env_int("MONITOR_HOUR", 1, minimum=0)
MONITOR_CHECK_SECONDS = env_int("MONITOR_CHECK_SECONDS", 3600, minimum=60)
# A day sent to a worker is not sent again before this many seconds (a task that died is then replaced).
MONITOR_RESEND_SECONDS = env_int("MONITOR_RESEND_SECONDS", 6 * 3600, minimum=60)
# The most records one day's monitor judges, whatever the budget (also the cap when the model has no price).
MONITOR_MAX_RECORDS = env_int("MONITOR_MAX_RECORDS", 2000, minimum=1)
CELERY_BEAT_SCHEDULE["monitor-days-due"] = {
    "task": "judges.tasks.monitor_days_due",
    "schedule": MONITOR_CHECK_SECONDS,
}
