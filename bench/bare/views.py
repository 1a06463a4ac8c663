"""`POST /bench/bare/ {text}`: validate with a serializer, write one row, answer 201.

Everything the real `POST /api/chats/{id}/messages/` shares with any DRF write (daphne, Django's middleware,
token authentication, the throttle check, parsing, a serializer, one INSERT in a transaction, rendering) and
nothing it adds (the domain, the chat row lock, seq, the outbox row, the audit log line).
"""

from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.bare.models import BareRow


class BareInput(serializers.Serializer):
    text = serializers.CharField(max_length=4096)


class BareApi(APIView):
    def post(self, request: Request) -> Response:
        data = BareInput(data=request.data)
        data.is_valid(raise_exception=True)
        row = BareRow.objects.create(text=data.validated_data["text"])
        return Response({"id": row.id, "text": row.text}, status=status.HTTP_201_CREATED)
