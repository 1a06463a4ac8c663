from django.contrib import admin
from django.contrib.auth.views import LoginView, LogoutView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chats.api.login_forms import LimitedAuthenticationForm
from chats.api.metrics import metrics
from chats.pages import chat_page

# The browsable API's login and logout (as rest_framework.urls), its login held to the failed-login limits.
browsable_api_auth = [
    path("login/", LoginView.as_view(template_name="rest_framework/login.html",
                                     authentication_form=LimitedAuthenticationForm), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
]

urlpatterns = [
    path("", chat_page, name="chat-page"),
    path("admin/", admin.site.urls),
    path("api/", include("chats.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api-auth/", include((browsable_api_auth, "rest_framework"))),
    path("metrics", metrics, name="metrics"),
]

handler400 = "chats.api.errors.bad_request"
handler403 = "chats.api.errors.permission_denied"
handler404 = "chats.api.errors.page_not_found"
handler500 = "chats.api.errors.server_error"
