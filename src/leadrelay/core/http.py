"""ASGI middleware and problem+json error handlers shared by every route.

The middleware is plain ASGI (no BaseHTTPMiddleware): it costs little on the hot path and
leaves streaming bodies alone.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadrelay.core.errors import PROBLEM_JSON, LeadRelayError, problem_body
from leadrelay.core.logging import correlation_id_var, get_logger, request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = get_logger("leadrelay.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

REQUESTS = Counter("leadrelay_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "leadrelay_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

BODY_METHODS = {"POST", "PUT", "PATCH"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_body(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A whole response from plain ASGI code (middleware and fast paths)."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_problem(
    send: Send,
    problem: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(problem).encode()
    await send_body(send, int(problem["status"]), body, PROBLEM_JSON.encode(), extra_headers)


async def _send_problem(send: Send, status: int, code: str, title: str, detail: str) -> None:
    await send_problem(send, problem_body(status=status, code=code, title=title, detail=detail))


async def _send_too_large(send: Send, max_bytes: int) -> None:
    await _send_problem(
        send, 413, "body-too-large", "Payload too large", f"the body exceeds {max_bytes} bytes"
    )


class RequestContextMiddleware:
    """Request and correlation ids (accepted from headers when well-formed, else generated),
    echoed in responses, bound to logs and carried into jobs; one access-log line and metrics
    per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else uuid.uuid4().hex
        incoming_corr = _header(scope, b"x-correlation-id")
        correlation_id = (
            incoming_corr if incoming_corr and _SAFE_ID.match(incoming_corr) else request_id
        )
        rid_token = request_id_var.set(request_id)
        cid_token = correlation_id_var.set(correlation_id)
        # Also on the request's state: the 500 handler runs outside this middleware, after the
        # context variables are reset, and still owes the client its ids.
        state = scope.setdefault("state", {})
        state["request_id"], state["correlation_id"] = request_id, correlation_id
        status_holder = {"status": 500}
        started = time.perf_counter()

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-correlation-id", correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            REQUESTS.labels(method, template, str(status_holder["status"])).inc()
            LATENCY.labels(method, template).observe(elapsed)
            if not template.startswith("/static"):
                log.info(
                    "http.request",
                    method=method,
                    route=template,
                    status=status_holder["status"],
                    ms=round(elapsed * 1000, 2),
                )
            request_id_var.reset(rid_token)
            correlation_id_var.reset(cid_token)


class _BodyTooLarge(Exception):
    """Raised into the app when a chunked body passes the limit."""


class BodyLimitMiddleware:
    """413 for bodies over the limit: by Content-Length up front, and while streaming.

    `path_limits` maps a path (and everything below it) to its own limit, for the few routes
    that take file uploads; the longest matching path wins."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = sorted((path_limits or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.path_limits:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope.get("path", ""))
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                await _send_problem(
                    send,
                    400,
                    "bad-content-length",
                    "Bad request",
                    "Content-Length must be a number",
                )
                return
            if int(length) > max_bytes:
                await _send_too_large(send, max_bytes)
                return
            # The server holds the body to its Content-Length: nothing left to count.
            await self.app(scope, receive, send)
            return
        received = 0
        started = False
        too_large = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                # The app caught the cut-off read and answers with its own error (FastAPI: a
                # 400 "error parsing the body"); the client is owed the 413 instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _send_too_large(send, max_bytes)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                started = True
                await _send_too_large(send, max_bytes)


class JsonContentTypeMiddleware:
    """/v1 routes that take a body take JSON: anything else is a 415, not a parse error.
    Paths in `raw_prefixes` (signed inbound webhooks, uploads) read their own bodies."""

    def __init__(self, app: ASGIApp, raw_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.raw_prefixes = raw_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] == "http"
            and scope.get("method") in BODY_METHODS
            and path.startswith("/v1/")
            and not path.startswith(self.raw_prefixes)
        ):
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            length = _header(scope, b"content-length")
            has_body = length not in (None, "0") or _header(scope, b"transfer-encoding")
            if has_body and not (
                content_type == "application/json" or content_type.endswith("+json")
            ):
                await _send_problem(
                    send,
                    415,
                    "unsupported-media-type",
                    "Unsupported media type",
                    "send the body as application/json",
                )
                return
        await self.app(scope, receive, send)


def _field_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        out.append(
            {
                "field": ".".join(location[1:]) if len(location) > 1 else ".".join(location),
                "location": location[0] if location else "body",
                "message": item.get("msg", "invalid"),
                "type": item.get("type", "invalid"),
            }
        )
    return out


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LeadRelayError)
    async def domain_error(request: Request, error: LeadRelayError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if error.status == 401 else None
        return problem_response(error.status, error.problem(request.url.path), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = _field_errors(error)
        if any(e["type"] == "json_invalid" for e in errors):
            body = problem_body(
                status=400,
                code="invalid-json",
                title="Bad request",
                detail="the body is not valid JSON",
                instance=request.url.path,
                errors=errors,
            )
            return problem_response(400, body)
        body = problem_body(
            status=422,
            code="validation-failed",
            title="Validation failed",
            detail="the request has invalid fields",
            instance=request.url.path,
            errors=errors,
        )
        return problem_response(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthenticated"}
        codes = {404: "not-found", 405: "method-not-allowed", 401: "unauthenticated"}
        detail = error.detail if isinstance(error.detail, str) else "request refused"
        if error.status_code == 404 and detail == "Not Found":
            detail = f"no route for {request.method} {request.url.path}"
        body = problem_body(
            status=error.status_code,
            code=codes.get(error.status_code, "http-error"),
            title=titles.get(error.status_code, "Error"),
            detail=detail,
            instance=request.url.path,
        )
        return problem_response(error.status_code, body, dict(error.headers or {}))

    @app.exception_handler(DataError)
    async def database_refused_value(request: Request, error: DataError) -> JSONResponse:
        # A value the schema let through but the column cannot hold (a safety net: schemas
        # should refuse it first, with the field named).
        log.warning("http.data_error", route=request.url.path, error=type(error.orig).__name__)
        body = problem_body(
            status=422,
            code="invalid-value",
            title="Validation failed",
            detail="a value in the request cannot be stored as given",
            instance=request.url.path,
        )
        return problem_response(422, body)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("http.unhandled", route=request.url.path, error=type(error).__name__)
        body = problem_body(
            status=500,
            code="internal-error",
            title="Internal error",
            detail="something went wrong on our side; the request id says where",
            instance=request.url.path,
        )
        ids = {
            "x-request-id": getattr(request.state, "request_id", None),
            "x-correlation-id": getattr(request.state, "correlation_id", None),
        }
        return problem_response(500, body, {k: v for k, v in ids.items() if v})
