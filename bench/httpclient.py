"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load from many clients in one process.

Why not urllib or a load tool: urllib opens a connection per request and blocks a thread, and an extra
package would have to be installed for the bench alone. Each `Connection` holds one socket and sends one
request at a time, like one browser tab or app instance; run 32 of them as tasks for 32 concurrent clients.
It speaks just enough HTTP for the service: JSON bodies and responses with a Content-Length.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """An HTTP/1.1 response's status and headers (names lowercased) from its head, up to the blank line."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


@dataclass
class Response:
    status: int
    body: bytes
    sent_at: float  # time.monotonic() just before the request was written
    seconds: float  # until the last byte of the response was read

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = f"Host: {host}:{port}\r\nAuthorization: Token {token}\r\nContent-Type: application/json\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict) -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        head = f"POST {path} HTTP/1.1\r\n{self.headers}Content-Length: {len(body)}\r\n\r\n".encode()
        sent_at = time.monotonic()
        self.writer.write(head + body)
        status, headers = parse_head(await self.reader.readuntil(b"\r\n\r\n"))
        if "content-length" not in headers:
            raise RuntimeError(f"POST {path}: response {status} has no Content-Length; this client needs one")
        content = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, content, sent_at, time.monotonic() - sent_at)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


@dataclass
class PacedPosts:
    responses: list[Response]
    behind_schedule_max_ms: float  # how late the latest POST left; large when all connections were busy


async def post_paced(connections: list[Connection], path: str, payloads: list[dict], rate: float | None) -> PacedPosts:
    """POSTs `payloads` to `path` at `rate` per second (None: back to back), each on a free connection."""
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in connections:
        free.put_nowait(connection)
    responses: list[Response] = []

    async def one(connection: Connection, payload: dict) -> None:
        try:
            responses.append(await connection.post(path, payload))
        finally:
            free.put_nowait(connection)

    late, tasks = 0.0, []
    start = time.monotonic()
    for index, payload in enumerate(payloads):
        scheduled = start + index / rate if rate else time.monotonic()
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        connection = await free.get()
        late = max(late, time.monotonic() - scheduled)
        tasks.append(asyncio.create_task(one(connection, payload)))
    await asyncio.gather(*tasks)
    return PacedPosts(responses, round(late * 1000, 1))
