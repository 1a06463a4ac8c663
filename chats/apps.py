from django.apps import AppConfig


class ChatsConfig(AppConfig):
    name = "chats"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chats import accounts  # noqa: F401  (connects the receivers)
        from chats.live import credentials  # noqa: F401
