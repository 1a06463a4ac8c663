"""Settings for `make bench` only: the service's settings plus a bare endpoint to compare it with.

The bare endpoint (`bench.bare`) lives in the same daphne process as the real API, so the ratio of the two
shows what the domain and the outbox cost per request, not what Django, DRF or the machine cost. It must
never exist in production, hence this separate module instead of a flag in `chatproject.settings`.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from chatproject.settings import *  # noqa: F403
from chatproject.settings import INSTALLED_APPS, REST_FRAMEWORK

# The bench writes thousands of rows: it must never fall back to the developer's db.sqlite3.
if not os.environ.get("DATABASE_URL"):
    raise ImproperlyConfigured("bench.settings needs DATABASE_URL; bench/run.py sets one to a temporary SQLite file.")

INSTALLED_APPS = [*INSTALLED_APPS, "bench.bare"]
ROOT_URLCONF = "bench.urls"
ASGI_APPLICATION = "bench.asgi.application"

# Throttling stays in the request path (both endpoints pay for the check) but can never refuse a request.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {**REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "writes": "1000000/second"},
}
