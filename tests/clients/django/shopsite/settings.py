"""
Settings of the small shop project the client suite migrates (tests/clients/run.sh).

Trimmed from `django-admin startproject shopsite` (Django 5.2): only what `manage.py
migrate` needs. The database comes from the libpq environment (PGHOST, PGPORT,
PGDATABASE, PGUSER), as a deployment would pass it.

DB_ENGINE picks the schema editor:
  django.db.backends.postgresql                       plain Django (the default)
  django_zero_downtime_migrations.backends.postgres   django-pg-zero-downtime-migrations
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-insecure-client-suite-only"
DEBUG = False
ALLOWED_HOSTS = []

INSTALLED_APPS = [
    "shop",
]

DATABASES = {
    "default": {
        "ENGINE": os.environ.get("DB_ENGINE", "django.db.backends.postgresql"),
        "HOST": os.environ.get("PGHOST", "/tmp"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "NAME": os.environ.get("PGDATABASE", "shop"),
        "USER": os.environ.get("PGUSER", "postgres"),
    }
}

# django-pg-zero-downtime-migrations: its README's recommended timeouts. Unsafe
# operations are left to its default (a warning, then the SQL is sent anyway), so that
# what the backend really sends reaches the server and the guard judges it.
ZERO_DOWNTIME_MIGRATIONS_LOCK_TIMEOUT = "2s"
ZERO_DOWNTIME_MIGRATIONS_STATEMENT_TIMEOUT = "2s"
ZERO_DOWNTIME_MIGRATIONS_FLEXIBLE_STATEMENT_TIMEOUT = True
ZERO_DOWNTIME_MIGRATIONS_RAISE_FOR_UNSAFE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
