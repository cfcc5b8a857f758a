"""A stand-in for graph.facebook.com on loopback: a real HTTP server that answers GET requests
with the JSON queued for their path and records every request (path and query string)."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from typing_extensions import override

# What Graph answers for an id it does not know (GraphMethodException, code 100, subcode 33).
UNKNOWN_OBJECT = {
    "error": {
        "message": "Unsupported get request. Object does not exist.",
        "type": "GraphMethodException",
        "code": 100,
        "error_subcode": 33,
        "fbtrace_id": "AbCdEfGhIjK",
    }
}


@dataclass(frozen=True)
class GraphRequest:
    method: str
    path: str
    query: dict[str, str]


class GraphServer:
    """`serve(path, (status, body), …)` queues answers for `path`; the last one repeats."""

    def __init__(self) -> None:
        self.requests: list[GraphRequest] = []
        self._answers: dict[str, collections.deque[tuple[int, object]]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str = "") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def serve(self, path: str, *answers: tuple[int, object]) -> None:
        with self._lock:
            self._answers.setdefault(path, collections.deque()).extend(answers)

    def received(self, path: str | None = None) -> list[GraphRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _answer(self, request: GraphRequest) -> tuple[int, object]:
        with self._lock:
            self.requests.append(request)
            queue = self._answers.get(request.path)
            if not queue:
                return 404, UNKNOWN_OBJECT
            return queue.popleft() if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                status, body = server._answer(GraphRequest("GET", parts.path, query))
                reply = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=UTF-8")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

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
def graph_server() -> Iterator[GraphServer]:
    server = GraphServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
