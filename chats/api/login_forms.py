"""Password logins through HTML forms (the admin's and the browsable API's), held to the same failed-login
limits as the token API (chats.api.throttling), so no login page is an unlimited way to guess passwords."""

from __future__ import annotations

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from chats.api.addresses import client_ip
from chats.api.throttling import LoginLocked, begin_login


class LoginLimitMixin:
    """Counts the attempt before the password is checked, and refuses it once over the limit."""

    def clean(self):
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # the form's own "required" errors; no password is checked
        try:
            attempt = begin_login(username, client_ip(self.request))
        except LoginLocked as locked:
            minutes = max(1, math.ceil(locked.wait / 60))
            raise forms.ValidationError(
                "Too many failed login attempts for this account or from your address. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                code="too_many_attempts",
            ) from None
        try:
            return super().clean()
        finally:
            # user_cache is set once the password matched, even if the account is then refused (not staff).
            if self.user_cache is not None:
                attempt.succeeded()


class LimitedAuthenticationForm(LoginLimitMixin, AuthenticationForm):
    """The browsable API's login (`/api-auth/login/`)."""


class LimitedAdminAuthenticationForm(LoginLimitMixin, AdminAuthenticationForm):
    """The admin's login."""
