from django.urls import path

from chats.live.consumers import ChatStreamConsumer, LobbyConsumer

websocket_urlpatterns = [
    path("ws/chats/", LobbyConsumer.as_asgi()),
    path("ws/chats/<str:chat_id>/", ChatStreamConsumer.as_asgi()),
]
