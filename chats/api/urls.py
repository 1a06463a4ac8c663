from django.urls import path

from chats.api import views

urlpatterns = [
    path("auth/register/", views.RegisterApi.as_view(), name="register"),
    path("auth/token/", views.TokenApi.as_view(), name="token"),
    path("auth/logout/", views.LogoutApi.as_view(), name="logout"),
    path("chats/", views.ChatListCreateApi.as_view(), name="chat-list"),
    path("chats/<str:chat_id>/", views.ChatDetailApi.as_view(), name="chat-detail"),
    path("chats/<str:chat_id>/messages/", views.MessageListCreateApi.as_view(), name="message-list"),
    path("health/", views.HealthApi.as_view(), name="health"),
]
