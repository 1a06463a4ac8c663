from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chats.pages import chat_page

urlpatterns = [
    path("", chat_page, name="chat-page"),
    path("admin/", admin.site.urls),
    path("api/", include("chats.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api-auth/", include("rest_framework.urls")),
]

handler400 = "chats.api.errors.bad_request"
handler403 = "chats.api.errors.permission_denied"
handler404 = "chats.api.errors.page_not_found"
handler500 = "chats.api.errors.server_error"
