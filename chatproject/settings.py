"""Settings: every knob comes from an environment variable, with a default that runs on a laptop."""

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG")
# The fallback is for a local run only; production sets DJANGO_SECRET_KEY (docker-compose.yml does), and
# `manage.py check --deploy` flags the fallback by its "django-insecure-" prefix.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "django-insecure-local-key-set-DJANGO_SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

# Origins other than the site's own from which pages may send the session cookie: POSTs (Django's CSRF check)
# and websockets (chats.live.entry), e.g. "https://chat.example.com,https://*.example.com".
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Behind TLS (DJANGO_HTTPS=1): HTTPS only, secure cookies, HSTS. The proxy in front terminates TLS and says so
# in X-Forwarded-Proto; with DJANGO_HTTPS unset (a laptop, the tests) plain HTTP works.
if env_bool("DJANGO_HTTPS"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS += [f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS if host != "*"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our static files: /api/docs/ works offline
    "channels",
    "chats",
]

MIDDLEWARE = [
    "chats.api.request_id.RequestIdMiddleware",  # first: every later middleware's log lines carry the id
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# SQLite unless DATABASE_URL says otherwise. SQLite gets WAL and IMMEDIATE transactions: writers queue
# for the write lock at BEGIN instead of failing with "database is locked" halfway through.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
# PostgreSQL through a connection pool per process: under ASGI every request runs in a thread of its own,
# so without one each request would open (and authenticate) a new connection. DATABASE_POOL_MAX_SIZE=0
# turns it off, and then DATABASE_CONN_MAX_AGE applies.
POOL_MAX_SIZE = int(os.environ.get("DATABASE_POOL_MAX_SIZE", "20"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and POOL_MAX_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django refuses both at once
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": POOL_MAX_SIZE, "timeout": 10}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with write transactions queued on a file lock instead of SQLite's sleeping busy
    # handler (chats/runtime/sqlite/base.py): several web processes and the relay write to one file.
    DATABASES["default"]["ENGINE"] = "chats.runtime.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that test threads and worker processes share one database; one per test
    # run, so that two runs on one machine do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"chat-test-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Request bodies larger than this are refused with 413 and the JSON error shape (chats.api.errors).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("CHAT_MAX_BODY_BYTES", str(64 * 1024)))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["chats.api.throttling.WriteRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "writes": os.environ.get("CHAT_WRITE_RATE", "600/minute"),
        "register": os.environ.get("CHAT_REGISTER_RATE", "20/hour"),
    },
    "EXCEPTION_HANDLER": "chats.api.errors.exception_handler",
    # DRF's defaults, with a JSON parser that answers JSON nested too deeply with 400, not 500.
    "DEFAULT_PARSER_CLASSES": [
        "chats.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# Proxies whose X-Forwarded-For is believed (IPs or CIDRs): only a request from one of them is counted against
# the forwarded client's address rather than the proxy's (chats.api.throttling.client_ip).
CHAT_TRUSTED_PROXIES = env_list("CHAT_TRUSTED_PROXIES", "")
# Failed logins (the token API and the admin form) allowed per account and per client address in a window;
# past either, logins are refused with 429 until the window ends, even with the right password.
CHAT_LOGIN_ACCOUNT_FAILURES = int(os.environ.get("CHAT_LOGIN_ACCOUNT_FAILURES", "10"))
CHAT_LOGIN_IP_FAILURES = int(os.environ.get("CHAT_LOGIN_IP_FAILURES", "50"))
CHAT_LOGIN_FAILURE_WINDOW_SECONDS = int(os.environ.get("CHAT_LOGIN_FAILURE_WINDOW_SECONDS", str(15 * 60)))

# Who may read GET /metrics besides loopback (IPs or CIDRs, comma-separated); everyone else gets a 404. The
# socket's peer address decides, never X-Forwarded-For.
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", "")

SPECTACULAR_SETTINGS = {
    "TITLE": "Chat service API",
    "DESCRIPTION": "Chats and messages; every change is also an event on Kafka and on websockets.",
    "VERSION": "1.0.0",
    # Pinned copies from drf-spectacular-sidecar, not the latest build from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# LOG_FORMAT=json: one JSON object per line (python-json-logger), with request_id, event_id and chat_id
# where they apply (chats.runtime.logs); plain text otherwise.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
LOGGING_CONFIG = "chats.runtime.logs.configure"  # dictConfig, and Python's warnings through logging
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "filters": {"context": {"()": "chats.runtime.logs.ContextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # kafka-python narrates every connection at INFO; its warnings and errors are what operators need.
    "loggers": {"kafka": {"level": "WARNING"}},
}

# Kafka. Unset bootstrap servers: `make run` starts the embedded broker and sets it for every process.
KAFKA_BOOTSTRAP_SERVERS = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
KAFKA_TOPIC = os.environ.get("KAFKA_TOPIC", "chat-events")
KAFKA_TOPIC_PARTITIONS = int(os.environ.get("KAFKA_TOPIC_PARTITIONS", "6"))
KAFKA_TOPIC_REPLICATION_FACTOR = int(os.environ.get("KAFKA_TOPIC_REPLICATION_FACTOR", "1"))
KAFKA_FORWARDER_GROUP = os.environ.get("KAFKA_FORWARDER_GROUP", "chat-forwarder")
# Longest the broker may hold the forwarder's fetch while it has nothing new. Apache Kafka answers as soon as
# data arrives, so the wait only bounds idle polling (kafka-python's 500). The embedded broker holds every fetch
# for the whole wait: `make run` sets 20 for it (chats.runtime.embedded), the wait being on every event's way.
KAFKA_FETCH_MAX_WAIT_MS = int(os.environ.get("KAFKA_FETCH_MAX_WAIT_MS", "500"))

# The channel layer carries events from forward_events to the websocket consumers of every web process.
# Redis pub/sub: each event crosses Redis once per group and is fanned out inside each web process,
# with no per-channel capacity to overflow (bench/README.md, "Channel layers").
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Throttle counters and websocket socket counts: shared in Redis when REDIS_URL is set (as `make run` and
# production do), so limits hold across web processes; per process otherwise.
if "REDIS_URL" in os.environ:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "pool_class": "chats.runtime.redis_pool.SharedConnectionPool",  # not a new connection per request
                # A Redis that does not answer costs a request at most this long; the throttles then let it
                # through (chats.api.throttling), rather than holding it for the kernel's connect timeout.
                "socket_connect_timeout": 1,
                "socket_timeout": 1,
            },
        }
    }

# Websocket limits (docs/protocol.md, "Limits").
CHAT_WS_MAX_FRAME_BYTES = int(os.environ.get("CHAT_WS_MAX_FRAME_BYTES", "4096"))
CHAT_WS_FRAMES_PER_SECOND = float(os.environ.get("CHAT_WS_FRAMES_PER_SECOND", "5"))
CHAT_WS_FRAME_BURST = int(os.environ.get("CHAT_WS_FRAME_BURST", "20"))
# A socket opened with ?batch=1 gets frames that are ready together (queued behind each other, a replay's page)
# as one {"type": "batch"} frame of at most this many bytes; under daphne's 1 MiB ceiling (chats.runtime.webserver).
CHAT_WS_BATCH_BYTES = int(os.environ.get("CHAT_WS_BATCH_BYTES", "65536"))
CHAT_WS_MAX_SOCKETS_PER_USER = int(os.environ.get("CHAT_WS_MAX_SOCKETS_PER_USER", "20"))
# A socket not admitted within this many seconds (Redis or the database slow to answer) is told 1013 "try again
# later"; daphne's handshake timeout is set above it (chats.management.commands.serve), or the client would get
# its connection dropped without an answer.
CHAT_WS_ADMISSION_SECONDS = float(os.environ.get("CHAT_WS_ADMISSION_SECONDS", "3"))
# A web process that dies takes its sockets out of the per-user counts within this many seconds
# (chats.live.socket_slots).
CHAT_WS_SOCKET_LEASE_SECONDS = int(os.environ.get("CHAT_WS_SOCKET_LEASE_SECONDS", "30"))
# Redis connections per web process for socket counts and presence; past them a socket waits for one.
CHAT_WS_REDIS_CONNECTIONS = int(os.environ.get("CHAT_WS_REDIS_CONNECTIONS", "50"))
# How often each web process checks the last seq of the chats it has subscribers for, so that a frame the
# channel layer lost is filled within two checks even when nothing follows it (chats.live.positions).
CHAT_WS_POSITION_CHECK_SECONDS = float(os.environ.get("CHAT_WS_POSITION_CHECK_SECONDS", "2"))
# Typing (chats.live.typing): at most one `typing` per user per chat this often, and at most this many per
# chat per second from one web process (a burst of typists must not crowd out the chat's messages).
CHAT_WS_TYPING_INTERVAL_SECONDS = float(os.environ.get("CHAT_WS_TYPING_INTERVAL_SECONDS", "2"))
CHAT_WS_TYPING_PER_CHAT_PER_SECOND = int(os.environ.get("CHAT_WS_TYPING_PER_CHAT_PER_SECOND", "2"))
# Presence (chats.live.presence): each web process sweeps the presence of its chats this often, so that the
# sockets of a dead process leave it within CHAT_WS_SOCKET_LEASE_SECONDS plus this.
CHAT_WS_PRESENCE_SWEEP_SECONDS = float(os.environ.get("CHAT_WS_PRESENCE_SWEEP_SECONDS", "10"))
# Past this many users online in a chat, joins and leaves go out as a fresh `presence` list at most every
# CHAT_WS_PRESENCE_REFRESH_SECONDS (per web process), not as a frame per user to every socket.
CHAT_WS_PRESENCE_CROWD = int(os.environ.get("CHAT_WS_PRESENCE_CROWD", "100"))
CHAT_WS_PRESENCE_REFRESH_SECONDS = float(os.environ.get("CHAT_WS_PRESENCE_REFRESH_SECONDS", "2"))

# A pooled connection that Redis closed (it restarted) is retried once on a new connection, instead of
# failing the send or the subscription it was serving: redis-py retries only the errors listed here.
def channel_layers_on(redis_url: str) -> dict:
    return {
        "default": {
            "BACKEND": "chats.live.layer.DirectPubSubChannelLayer",  # channels-redis pub/sub, sockets as receivers
            "CONFIG": {
                "hosts": [{"address": redis_url, "retry": Retry(NoBackoff(), 1),
                           "retry_on_error": [RedisConnectionError, RedisTimeoutError]}],
            },
        }
    }


CHANNEL_LAYERS = channel_layers_on(REDIS_URL)
