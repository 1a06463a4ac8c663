"""The web page at `/`: one template and a small script (chats/static/chats/app.js) that talks to the API.

The page is public; signing up, logging in and everything after happen in the script, with a token kept in
the browser's localStorage and sent as `Authorization: Token …` (and `?token=` on websockets).
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def chat_page(request: HttpRequest) -> HttpResponse:
    return render(request, "chats/index.html")
