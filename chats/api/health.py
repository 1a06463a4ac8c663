"""Health for load balancers and operators."""

from __future__ import annotations

from django.db import DatabaseError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.api.errors import error_body
from chats.queries import outbox_state


class HealthApi(APIView):
    """For load balancers and operators: is the database up, and is the relay keeping up?"""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {
                "status": serializers.CharField(),
                "db": serializers.CharField(),
                "outbox_pending": serializers.IntegerField(),
                "outbox_oldest_pending_seconds": serializers.FloatField(allow_null=True),
                "outbox_parked": serializers.IntegerField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        try:
            outbox = outbox_state()
        except DatabaseError as error:
            body = error_body("unavailable", f"The database is unreachable: {error}")
            return Response(
                {**body, "status": "unavailable", "db": "error", "outbox_pending": None},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response(
            {
                "status": "ok",
                "db": "ok",
                "outbox_pending": outbox["pending"],
                "outbox_oldest_pending_seconds": outbox["oldest_pending_seconds"],
                "outbox_parked": outbox["parked"],
            }
        )
