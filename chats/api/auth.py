"""Accounts and credentials: register, get a token, log out."""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model, logout
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chats.api.addresses import client_ip
from chats.api.throttling import (
    LoginLocked,
    RegisterRateThrottle,
    WriteRateThrottle,
    begin_login,
)

USERNAME_TAKEN = "This username is taken."


class RegisterApi(APIView):
    permission_classes = [AllowAny]
    # No authentication, so no session CSRF check: a browser that also holds a session cookie (the admin
    # is open in another tab) can still sign up and log in here.
    authentication_classes: list = []
    throttle_classes = [RegisterRateThrottle, WriteRateThrottle]

    class RegisterInput(serializers.Serializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=128)

        def validate(self, attrs):
            User = get_user_model()
            if User.objects.filter(username__iexact=attrs["username"]).exists():
                raise serializers.ValidationError({"username": USERNAME_TAKEN})
            try:
                validate_password(attrs["password"], User(username=attrs["username"]))
            except DjangoValidationError as error:
                raise serializers.ValidationError({"password": list(error.messages)}) from None
            return attrs

    @extend_schema(
        request=RegisterInput,
        responses={201: inline_serializer("Registered", {"username": serializers.CharField(),
                                                         "token": serializers.CharField()})},
    )
    def post(self, request: Request) -> Response:
        data = self.RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                user = get_user_model().objects.create_user(**data.validated_data)
                token = Token.objects.create(user=user)
        except IntegrityError:
            # Another registration took the name (in any case: migration 0004's index) after our check.
            raise serializers.ValidationError({"username": USERNAME_TAKEN}) from None
        return Response({"username": user.username, "token": token.key}, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []  # as RegisterApi

    class TokenInput(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(trim_whitespace=False)

    @extend_schema(request=TokenInput, responses=inline_serializer("Token", {"token": serializers.CharField()}))
    def post(self, request: Request) -> Response:
        data = self.TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            attempt = begin_login(data.validated_data["username"], client_ip(request))
        except LoginLocked as locked:
            raise exceptions.Throttled(locked.wait, detail="Too many failed login attempts.") from None
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise serializers.ValidationError(
                "Unable to log in with these credentials.", code="invalid_credentials"
            )
        attempt.succeeded()
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class LogoutApi(APIView):
    """Ends what authenticated this request: deletes the token, or ends the session.

    Either way the websockets opened with it are closed (4401), see chats.live.credentials.
    """

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, Token):
            request.auth.delete()
        else:
            logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)
