"""Writes are throttled per user (per client IP when anonymous); reads are not. Registrations, which
create users and so cannot be throttled per user, are throttled per client IP on their own."""

from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class WriteRateThrottle(UserRateThrottle):
    scope = "writes"

    def allow_request(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class RegisterRateThrottle(AnonRateThrottle):
    scope = "register"
