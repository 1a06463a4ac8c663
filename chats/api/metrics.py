"""`GET /metrics`: this web process's Prometheus metrics (chats.runtime.metrics), for loopback and
METRICS_ALLOWED_IPS only; everyone else gets the API's 404, as if there were nothing here.

The address is the socket's peer (REMOTE_ADDR, which daphne sets from the connection since `serve` runs it
without proxy headers), never X-Forwarded-For: a client chooses that header.
"""

from __future__ import annotations

import ipaddress

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from chats.api.addresses import networks
from chats.runtime.metrics import expose_outbox_backlog


def may_read_metrics(remote_addr: str | None) -> bool:
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    return any(address in network for network in networks("METRICS_ALLOWED_IPS"))


@csrf_exempt  # it writes nothing; and a refused POST must get the same 404 as a GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not may_read_metrics(request.META.get("REMOTE_ADDR")):
        raise Http404  # before the method check: a 405 would tell that something is here
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    expose_outbox_backlog(close_connection=False)  # Django closes a request's connection itself
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
