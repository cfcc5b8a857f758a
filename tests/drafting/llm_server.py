"""An OpenAI-compatible endpoint on loopback: a real HTTP server answering
`POST /v1/chat/completions` with the answers a test queued (recorded `chat.completion` JSON,
recorded `text/event-stream` chunk streams, OpenAI-shaped error bodies, slow answers and
streams that stall mid-way), recording every request with its headers and parsed JSON body.

The drafting adapter's promise is about time and failure (a 5-second bound, then the template),
so the server has to misbehave the way providers do, over real sockets: a mock of the SDK would
never exercise the connect, chunked transfer or half-finished stream that the bound is for.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from typing_extensions import override

FIXTURES = Path(__file__).parent / "fixtures"
COMPLETIONS_PATH = "/v1/chat/completions"
# Longest a stalled answer holds its connection; `stop()` releases it earlier.
MAX_HOLD_SECONDS = 30.0


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


def not_found(path: str) -> dict[str, Any]:
    # What api.openai.com answers for a path it does not route.
    return {
        "error": {
            "message": f"Invalid URL (POST {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    # Server-sent events, each written as its own HTTP chunk so the client sees them arrive.
    events: tuple[bytes, ...] | None = None
    # Seconds to wait before the status line: a provider that is slow to start answering.
    delay: float = 0.0
    # Write this many events, then hold the connection open: a stream stalled mid-way.
    stall_after: int | None = None


@dataclass(frozen=True)
class LlmRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    json: Any


def completion(body: object) -> Answer:
    """A non-streaming answer: a `chat.completion` object (or anything JSON) with status 200."""
    return Answer(200, json.dumps(body).encode())


def stream(sse: str, *, stall_after: int | None = None) -> Answer:
    """A streaming answer from recorded `text/event-stream` text (events split on blank lines)."""
    events = tuple(f"{event}\n\n".encode() for event in sse.split("\n\n") if event.strip())
    return Answer(
        200,
        content_type="text/event-stream; charset=utf-8",
        headers={"cache-control": "no-cache"},
        events=events,
        stall_after=stall_after,
    )


def error(status: int, body: object) -> Answer:
    return Answer(status, json.dumps(body).encode())


def slow(answer: Answer, delay: float) -> Answer:
    return dataclasses.replace(answer, delay=delay)


class LlmServer:
    """`serve(answer, …)` queues answers for the completions path; the last one repeats."""

    def __init__(self) -> None:
        self.requests: list[LlmRequest] = []
        self._answers: collections.deque[Answer] = collections.deque()
        self._lock = threading.Lock()
        # Set on stop: slow and stalled handlers wake up instead of outliving the test.
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """What `LEADRELAY_LLM_BASE_URL` would hold: the root that `/chat/completions` hangs off."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def serve(self, *answers: Answer) -> None:
        with self._lock:
            self._answers.extend(answers)

    def received(self, path: str | None = None) -> list[LlmRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _answer(self, request: LlmRequest) -> Answer:
        with self._lock:
            self.requests.append(request)
            if request.path != COMPLETIONS_PATH or not self._answers:
                return error(404, not_found(request.path))
            return self._answers.popleft() if len(self._answers) > 1 else self._answers[0]

    def _hold(self, seconds: float) -> None:
        self._released.wait(seconds)

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
                    LlmRequest(
                        "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, parsed
                    )
                )
                if answer.delay:
                    server._hold(answer.delay)
                try:
                    if answer.events is None:
                        self._send_whole(answer)
                    else:
                        self._send_stream(answer, answer.events)
                except OSError:
                    # The client gave up (its deadline passed) and closed the socket: expected.
                    self.close_connection = True

            def _send_whole(self, answer: Answer) -> None:
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def _send_stream(self, answer: Answer, events: tuple[bytes, ...]) -> None:
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("transfer-encoding", "chunked")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for index, event in enumerate(events):
                    if answer.stall_after is not None and index >= answer.stall_after:
                        server._hold(MAX_HOLD_SECONDS)
                        self.close_connection = True
                        return
                    self.wfile.write(f"{len(event):X}\r\n".encode() + event + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            @override
            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def llm_server() -> Iterator[LlmServer]:
    server = LlmServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
