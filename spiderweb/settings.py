"""Django settings, read once from the environment.

Every knob is an environment variable (`SPIDERWEB_*` for ours, standard names otherwise) so the same code runs
as the embedded demo (SQLite, filesystem broker) and in production (PostgreSQL, Redis) without a config file.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("SPIDERWEB_STATE_DIR", BASE_DIR / ".state"))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use true or false)")


def _env_milliseconds(name: str, default: int) -> int:
    """A PostgreSQL timeout in whole milliseconds; 0 turns it off (PostgreSQL's own meaning of 0)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) > 2_147_483_647:
        raise ValueError(f"{name}={value!r} is not a whole number of milliseconds from 0 to 2147483647")
    return int(value)


DEBUG = _env_bool("SPIDERWEB_DEBUG", False)
SECRET_KEY = os.environ.get("SPIDERWEB_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SPIDERWEB_SECRET_KEY must be set (or SPIDERWEB_DEBUG=true for a throw-away demo key)")
    SECRET_KEY = "spiderweb-insecure-demo-key-do-not-use-in-production"
ALLOWED_HOSTS = [h for h in os.environ.get("SPIDERWEB_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("SPIDERWEB_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(f"{name}={value!r} is not a whole number")
    return int(value)


# HTTPS. In production the portal sits behind a TLS-terminating proxy or ingress: SPIDERWEB_HTTPS=true makes cookies
# secure, sends HSTS and redirects plain HTTP to HTTPS; SPIDERWEB_TRUST_X_FORWARDED_PROTO=true lets the proxy's
# X-Forwarded-Proto say the request came in over HTTPS (set it only when a proxy strips the header from clients).
# The node agents' internal API and the health probes may stay on plain HTTP inside the cluster
# (SPIDERWEB_SSL_REDIRECT_EXEMPT, regular expressions on the path without its leading slash).
SPIDERWEB_HTTPS = _env_bool("SPIDERWEB_HTTPS", False)
if _env_bool("SPIDERWEB_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SPIDERWEB_HTTPS
SECURE_SSL_REDIRECT = _env_bool("SPIDERWEB_SSL_REDIRECT", SPIDERWEB_HTTPS)
SECURE_REDIRECT_EXEMPT = [
    r for r in os.environ.get("SPIDERWEB_SSL_REDIRECT_EXEMPT", r"^api/internal/,^healthz$,^readyz$").split(",") if r
]
SECURE_HSTS_SECONDS = _env_int("SPIDERWEB_HSTS_SECONDS", 31_536_000 if SPIDERWEB_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SPIDERWEB_HSTS_INCLUDE_SUBDOMAINS", SPIDERWEB_HTTPS)
SECURE_HSTS_PRELOAD = _env_bool("SPIDERWEB_HSTS_PRELOAD", SPIDERWEB_HTTPS)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = _env_int("SPIDERWEB_SESSION_COOKIE_AGE", 8 * 3600)
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "spiderweb.tenancy.admin_config.PortalAdminConfig",  # django.contrib.admin, open to tenant members
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # hashed, expiring REST API tokens (before spiderweb.ipam, whose admin replaces knox's)
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from our static files (air-gapped sites, no CDN)
    "import_export",  # CSV/JSON/YAML import and export of pools, subnets and reservations (ipam/resources.py)
    "spiderweb.tenancy",
    "spiderweb.changelog",
    "spiderweb.ipam",
    "spiderweb.controllers",
    "spiderweb.controllers.mirror",
    "spiderweb.controllers.gc",
    "spiderweb.controllers.autopool",
    "spiderweb.controllers.coordinator",
    "spiderweb.controllers.multus",
]

MIDDLEWARE = [
    "spiderweb.ipam.metrics.MetricsMiddleware",  # GET /metrics, before the host check (Prometheus scrapes pod IPs)
    "spiderweb.ipam.health.HealthMiddleware",  # GET /healthz (database), before the host check (kubelet probes)
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "spiderweb.changelog.middleware.ChangeActorMiddleware",
]

ROOT_URLCONF = "spiderweb.urls"
WSGI_APPLICATION = "spiderweb.wsgi.application"
ASGI_APPLICATION = "spiderweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "spiderweb" / "templates"],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{STATE_DIR / 'spiderweb.sqlite3'}"),
        conn_max_age=int(os.environ.get("SPIDERWEB_DB_CONN_MAX_AGE", "60")),
        # A kept connection is checked before a request reuses it, so a database restart costs the next request
        # a reconnect instead of an error.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded demo serves the portal, a worker and beat from one file: wait for locks instead of failing. A
    # busy timeout alone is not enough: a transaction that read first and writes later cannot wait for the write
    # lock (SQLite answers "database is locked" at once to avoid a deadlock), so every transaction takes the write
    # lock when it begins (IMMEDIATE), and WAL lets readers go on while one transaction writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )

# One request stalled while holding a pool or pod lock must not stop every other request for as long as it stalls:
# a lock wait gives up after SPIDERWEB_DB_LOCK_TIMEOUT_MS (the request answers a retryable 503), and a session
# idle inside a transaction for SPIDERWEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS is ended, releasing its locks.
SPIDERWEB_DB_LOCK_TIMEOUT_MS = _env_milliseconds("SPIDERWEB_DB_LOCK_TIMEOUT_MS", 5000)
SPIDERWEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = _env_milliseconds("SPIDERWEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 30000)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # libpq's `options` startup parameter: set when the connection starts, so no statement is spent on it. A value of
    # 0 is left out (PostgreSQL's default, off). Options given in DATABASE_URL come last and win. Behind a pooler
    # that refuses startup options, set both to 0 and the timeouts on the role (ALTER ROLE ... SET lock_timeout ...).
    _timeouts = {
        "lock_timeout": SPIDERWEB_DB_LOCK_TIMEOUT_MS,
        "idle_in_transaction_session_timeout": SPIDERWEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    }
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _session = " ".join([f"-c {name}={ms}" for name, ms in _timeouts.items() if ms] + [_options.get("options", "")])
    if _session.strip():
        _options["options"] = _session.strip()

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("SPIDERWEB_STATIC_ROOT", STATE_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise serves from here (filled by collectstatic)

LOGIN_URL = "/admin/login/"

# django-import-export: each import is one transaction (who may import and export: ipam/admin.py PortableMixin).
IMPORT_EXPORT_USE_TRANSACTIONS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "spiderweb.ipam.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "spiderweb.ipam.api.pagination.CappedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "spiderweb.ipam.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "spiderweb.ipam.api.throttles.AnonRateThrottle",
        "spiderweb.ipam.api.throttles.UserRateThrottle",
    ],
    # <n>/<second|minute|hour|day>; "node" is per node credential, "login" per client address (api/throttles.py)
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("SPIDERWEB_THROTTLE_ANON", "60/minute"),
        "user": os.environ.get("SPIDERWEB_THROTTLE_USER", "1200/minute"),
        "node": os.environ.get("SPIDERWEB_THROTTLE_NODE", "6000/minute"),
        "login": os.environ.get("SPIDERWEB_THROTTLE_LOGIN", "10/minute"),
    },
}

# Throttle counters (and nothing else yet): in-process memory unless SPIDERWEB_CACHE_URL names a Redis shared by every
# portal process (the chart points it at the broker's). Short socket timeouts: the throttles let requests through
# while that Redis is away (api/throttles.py), and an allocation must not wait long to learn it is.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("SPIDERWEB_CACHE_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": os.environ["SPIDERWEB_CACHE_URL"], "KEY_PREFIX": "spiderweb-cache",
                          "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}

# REST API tokens: only a SHA-512 digest is stored; each expires SPIDERWEB_API_TOKEN_TTL_HOURS (default 30 days)
# after it was issued; clients rotate their own (api/tokens.py).
API_TOKEN_TTL_HOURS = _env_int("SPIDERWEB_API_TOKEN_TTL_HOURS", 720)
if API_TOKEN_TTL_HOURS < 1:
    raise ValueError(f"SPIDERWEB_API_TOKEN_TTL_HOURS={API_TOKEN_TTL_HOURS} must be at least 1 (tokens always expire)")
REST_KNOX = {"TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS), "AUTO_REFRESH": False}

SPECTACULAR_SETTINGS = {
    "TITLE": "Spiderweb API",
    "DESCRIPTION": "Spiderpool-compatible underlay IPAM: tenants, subnets, pools, reservations and allocations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and Swagger UI need a login (session or API token); Swagger UI loads only our own static files.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis in production; the embedded demo uses kombu's filesystem transport (no broker process).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = STATE_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_queue_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(STATE_DIR / "celerybeat-schedule")

# Spiderweb knobs.
SPIDERWEB_NAMESPACE = os.environ.get("SPIDERWEB_NAMESPACE", "kube-system")
SPIDERWEB_DEFAULT_TENANT = os.environ.get("SPIDERWEB_DEFAULT_TENANT", "default")
# The SpiderCoordinator whose settings and discovered CIDRs every pod's coordinator uses (Spiderpool's variable,
# misspelling included; spec §12.4).
SPIDERPOOL_COORDINATOR_NAME = os.environ.get("SPIDERPOOL_COORDINATOR_DEAFULT_NAME") or "default"
# Spiderpool caps a pool at 5000 records because they live in one CRD status; PostgreSQL has no such limit, so 0
# (no cap) is our default. Set it to reproduce Spiderpool exactly.
SPIDERWEB_IPPOOL_MAX_ALLOCATED_IPS = int(os.environ.get("SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS", "0"))

# The portal reads a pod from the API server only to confirm a pod re-created on another node (never on the usual
# allocation path); without Kubernetes credentials such a re-creation waits for the owning node or the GC.
SPIDERWEB_KUBECONFIG = os.environ.get("KUBECONFIG", "")
SPIDERWEB_PORTAL_READS_PODS = _env_bool(
    "SPIDERWEB_PORTAL_READS_PODS", bool(SPIDERWEB_KUBECONFIG or os.environ.get("KUBERNETES_SERVICE_HOST"))
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("SPIDERWEB_LOG_LEVEL", "INFO")},
}
