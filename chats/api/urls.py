from django.urls import path

from chats.api import auth, chats, health, members, messages

urlpatterns = [
    path("auth/register/", auth.RegisterApi.as_view(), name="register"),
    path("auth/token/", auth.TokenApi.as_view(), name="token"),
    path("auth/logout/", auth.LogoutApi.as_view(), name="logout"),
    path("chats/", chats.ChatListCreateApi.as_view(), name="chat-list"),
    path("chats/<str:chat_id>/", chats.ChatDetailApi.as_view(), name="chat-detail"),
    path("chats/<str:chat_id>/messages/", messages.MessageListCreateApi.as_view(), name="message-list"),
    path("chats/<str:chat_id>/messages/<str:seq>/", messages.MessageDetailApi.as_view(), name="message-detail"),
    path("chats/<str:chat_id>/members/", members.MemberListCreateApi.as_view(), name="member-list"),
    path("chats/<str:chat_id>/members/<str:username>/", members.MemberDetailApi.as_view(), name="member-detail"),
    path("chats/<str:chat_id>/read/", members.ReadPositionApi.as_view(), name="read-position"),
    path("health/", health.HealthApi.as_view(), name="health"),
]
