"""Assertions and walks that the API tests share."""

from chats.models import Chat, Membership, Message, OutboxEvent


def assert_error(response, status: int, code: str | None = None) -> None:
    """The one error shape: `{"error": {"code", "message"}}`, JSON, with the given status (and code)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body


def database_state() -> tuple:
    """What a refused request must leave unchanged: the chats, the messages and the outbox (its event ids at
    [2]), then each chat's changing columns (its version too), every membership with its role and read
    position, and every message as it is now (text, edited, deleted, version)."""
    return (
        Chat.objects.count(),
        Message.objects.count(),
        list(OutboxEvent.objects.order_by("id").values_list("event_id", flat=True)),
        list(
            Chat.objects.order_by("id").values_list(
                "id", "title", "last_seq", "visibility", "member_count", "version"
            )
        ),
        membership_rows(),
        message_rows(),
    )


def message_rows() -> list[tuple]:
    """Every message as (chat id, seq, text, edited_at, deleted, version), in a stable order."""
    return list(
        Message.objects.order_by("chat_id", "seq").values_list(
            "chat_id", "seq", "text", "edited_at", "deleted", "version"
        )
    )


def membership_rows() -> list[tuple]:
    """Every membership as (chat id, username, role, last read seq), in a stable order."""
    return list(
        Membership.objects.order_by("chat_id", "user__username").values_list(
            "chat_id", "user__username", "role", "last_read_seq"
        )
    )


def walk(api, url: str) -> list[list[dict]]:
    """Every page from `url` on, following `next` until it is null."""
    pages = []
    while url is not None:
        response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next"}
        pages.append(body["results"])
        url = body["next"]
        assert len(pages) < 100, "next never became null"
    return pages
