"""The service's URLs plus the bench-only bare endpoint, `POST /bench/bare/`."""

from django.urls import path

from bench.bare.views import BareApi
from chatproject.urls import handler400, handler403, handler404, handler500  # noqa: F401 (Django reads them here)
from chatproject.urls import urlpatterns as service_urlpatterns

urlpatterns = [*service_urlpatterns, path("bench/bare/", BareApi.as_view(), name="bench-bare")]
