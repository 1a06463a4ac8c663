"""Reading a process's metrics and logs from the outside, as Prometheus and a log shipper would; a user to act as."""

import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import http_json

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Scrape:
    """One scrape: the families by name (HELP, TYPE, samples) and sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families.values()
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))


def scrape(url: str) -> Scrape:
    with _NO_PROXY.open(url, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return Scrape(response.read().decode())


def json_lines(output: str) -> list[dict]:
    """Every line of a process's output, each parsed as one JSON object (fails on any line that is not)."""
    lines = []
    for number, line in enumerate(output.splitlines(), 1):
        try:
            parsed = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(parsed, dict), line
        lines.append(parsed)
    return lines


PASSWORD = "correct-horse-battery-9"


def ann_with_a_chat(base: str) -> tuple[str, dict]:
    """Registers ann on a running server and creates a chat for her: her token and the chat."""
    status, body = http_json(base, "POST", "/api/auth/register/", {"username": "ann", "password": PASSWORD})
    assert status == 201, body
    status, chat = http_json(base, "POST", "/api/chats/", {"title": "Lunch"}, body["token"])
    assert status == 201, chat
    return body["token"], chat
