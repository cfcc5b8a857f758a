"""A stand-in for api.hubapi.com on loopback: a real HTTP server that answers POSTs with the
answers queued for their path (JSON bodies, any status, extra headers such as Retry-After)
and records every request with its headers and parsed JSON body."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from typing_extensions import override

# What HubSpot answers for a path it does not have (the shape of its error body).
NOT_FOUND = {
    "status": "error",
    "message": "Unable to route POST request: no route on loopback",
    "correlationId": "00000000-0000-0000-0000-000000000404",
    "category": "OBJECT_NOT_FOUND",
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: object  # JSON, or bytes sent as they are
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HubSpotRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    json: Any


def ok(body: object) -> Answer:
    return Answer(200, body)


class HubSpotServer:
    """`serve(path, answer, …)` queues answers for `path`; the last one repeats."""

    def __init__(self) -> None:
        self.requests: list[HubSpotRequest] = []
        self._answers: dict[str, collections.deque[Answer]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._answers.setdefault(path, collections.deque()).extend(answers)

    def received(self, path: str | None = None) -> list[HubSpotRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _answer(self, request: HubSpotRequest) -> Answer:
        with self._lock:
            self.requests.append(request)
            queue = self._answers.get(request.path)
            if not queue:
                return Answer(404, NOT_FOUND)
            return queue.popleft() if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    parsed: Any = json.loads(raw) if raw else None
                except ValueError:
                    parsed = raw
                answer = server._answer(
                    HubSpotRequest(
                        "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, parsed
                    )
                )
                reply = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body)
                payload = reply if isinstance(reply, bytes) else reply.encode()
                self.send_response(answer.status)
                self.send_header("content-type", "application/json;charset=utf-8")
                self.send_header("content-length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            @override
            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def hubspot_server() -> Iterator[HubSpotServer]:
    server = HubSpotServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
