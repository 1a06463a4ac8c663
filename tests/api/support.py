"""Assertions and walks that the API tests share."""

from chats.models import Chat, Message, OutboxEvent


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
    """What a refused request must leave unchanged: the chats, the messages and the outbox."""
    return (
        Chat.objects.count(),
        Message.objects.count(),
        list(OutboxEvent.objects.order_by("id").values_list("event_id", flat=True)),
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
