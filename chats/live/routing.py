"""The websocket routes: each path's consumer class (chats.live.entry runs it)."""

from django.urls import path

from chats.live.consumers import ChatStreamConsumer, LobbyConsumer

websocket_urlpatterns = [
    path("ws/chats/", LobbyConsumer),
    path("ws/chats/<str:chat_id>/", ChatStreamConsumer),
]
