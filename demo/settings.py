"""Settings of the demo shop.

With no environment variables it runs on SQLite with Celery tasks executed in-process (eager).
Set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/shop_recs) and CELERY_BROKER_URL
(e.g. redis://127.0.0.1:6379/0) to run on PostgreSQL with real Celery workers.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SHOP_RECS_VAR_DIR", BASE_DIR / "var"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",  # token auth for the plugin's REST API (apps, other servers)
    "drf_spectacular",
    "shop_recs",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Remembers a guest's session key so their events follow them into their account at login.
    "shop_recs.middleware.GuestSessionMiddleware",
    # Pages that show a shopper's own recommendations get Cache-Control: private.
    "shop_recs.middleware.PrivateResponseMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The demo's own folder first, so that its shop_recs/*.html override the plugin's (as
        # any shop's templates folder would). The plugin's templates live in the top-level
        # templates/ folder of the source tree; an installed wheel carries them inside
        # shop_recs/templates, found through APP_DIRS.
        "DIRS": [BASE_DIR / "demo" / "templates", BASE_DIR / "templates"],
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

WSGI_APPLICATION = "demo.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'demo.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if not os.environ.get("REDIS_CACHE_URL")
    else {"BACKEND": "django.core.cache.backends.redis.RedisCache",
          "LOCATION": os.environ["REDIS_CACHE_URL"]}
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# --- Celery: eager in-process unless a broker is configured --------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = "CELERY_BROKER_URL" not in os.environ
CELERY_TASK_EAGER_PROPAGATES = True
# What the plugin relies on (see README, "Operating it"): a worker takes one task at a time
# (training is long and memory-hungry), and broker messages are visible again after this long
# if unacknowledged (training acknowledges on receipt, so it is never delivered twice).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600)),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- REST framework -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Browsers use the session (guests too); apps and servers send "Authorization: Token <key>".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "shop-recs API",
    "DESCRIPTION": "Recommendations, events and click feedback of the shop-recs plugin.",
    "VERSION": "1",
}

# --- The plugin ---------------------------------------------------------------------------
SHOP_RECS = {
    "PRODUCT_MODEL": "demo.Product",
    "PRODUCT_TEXT_FIELDS": ["title", "description", "category__name", "brand"],
    "PRODUCT_CATEGORY_FIELD": "category",
    "PRODUCT_AVAILABLE_FILTER": {"active": True, "stock__gt": 0},
    "ORDER_LINE_MODEL": "demo.OrderLine",
    "ORDER_LINE_PRODUCT_FIELD": "product",
    "ORDER_LINE_USER_FIELD": "order__user",
    "ORDER_LINE_QUANTITY_FIELD": "quantity",
    "ORDER_LINE_TIME_FIELD": "order__created_at",
    # The demo runs Celery in-process: train in a background thread so the admin stays live.
    "EAGER_TRAINING_IN_BACKGROUND": True,
    "LOCAL_CACHE_DIR": str(VAR_DIR / "cache"),
    # Every core for "Retrain now" in the demo's own process (which serves on one thread).
    "TRAINING": {"epochs": 30, "patience": 4, "num_threads": len(os.sched_getaffinity(0))},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"shop_recs": {"handlers": ["console"], "level": "INFO"}},
}
