"""Who is asking, by network address: the client behind trusted proxies, and the networks settings list."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(setting: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The IP networks a setting lists (addresses or CIDRs); a bad entry is a configuration error naming it."""
    return _networks(setting, tuple(getattr(settings, setting, ())))


@lru_cache(maxsize=8)
def _networks(setting: str, entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as error:
        raise ImproperlyConfigured(f"{setting}: {error}") from None


def _parse(address: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(address.strip())
    except ValueError:
        return None


def client_ip(request) -> str:
    """The address of the client that sent `request` (a Django or DRF request).

    REMOTE_ADDR, unless it is a trusted proxy (CHAT_TRUSTED_PROXIES): then X-Forwarded-For is read from the
    right, skipping the trusted proxies that appended to it, and the first address that is not one is the
    client. Everything left of that came from the client and may be forged. An entry that is not an address
    stops the walk at the proxy that reported it.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = networks("CHAT_TRUSTED_PROXIES")

    def trusted(address: IpAddress | None) -> bool:
        return address is not None and any(address in network for network in proxies)

    hop = _parse(remote)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not trusted(hop) or not forwarded:
        return remote
    for entry in reversed(forwarded.split(",")):
        address = _parse(entry)
        if address is None:
            break
        hop = address
        if not trusted(hop):
            break
    return str(hop)
