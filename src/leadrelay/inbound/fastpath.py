"""The signed-webhook receivers' fast path: plain ASGI ahead of FastAPI's routing.

Providers send many small deliveries; for each, FastAPI's routing (a linear match over every
route), exception middleware, dependency solving and Request objects cost more CPU than
verifying and storing it. This middleware answers `POST /v1/inbound/{uuid}` and the delivery
webhooks (`telemetry.api.FAST_PATHS`) itself, with the same code as the documented routes,
inside the same outer middleware (request ids, logs, metrics, body limit). Everything else
passes through untouched.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from leadrelay.core.errors import LeadRelayError, problem_body
from leadrelay.core.http import ASGIApp, Receive, Scope, Send, send_body, send_problem
from leadrelay.core.logging import get_logger
from leadrelay.inbound.api import handle_delivery
from leadrelay.telemetry.api import FAST_PATHS

log = get_logger("leadrelay.inbound")
_PATH = re.compile(r"^/v1/inbound/([0-9a-fA-F-]{32,36})$")


class InboundFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        provider = FAST_PATHS.get(path)
        match = _PATH.match(path) if provider is None else None
        if provider is None and match is None:
            await self.app(scope, receive, send)
            return
        endpoint_id: uuid.UUID | None = None
        if match is not None:
            try:
                endpoint_id = uuid.UUID(match.group(1))
            except ValueError:
                await self.app(scope, receive, send)  # not an id: let the router say 404/422
                return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        app: Any = scope["app"]
        try:
            if endpoint_id is not None:
                code, body = await handle_delivery(
                    app.state, endpoint_id, headers, b"".join(chunks)
                )
            elif provider is not None:
                code, body = 200, await provider(app.state, headers, b"".join(chunks))
            await send_body(send, code, body, b"application/json")
        except LeadRelayError as error:
            extra = [(b"www-authenticate", b"Bearer")] if error.status == 401 else None
            await send_problem(send, error.problem(scope.get("path")), extra)
        except Exception:
            log.exception("inbound.unhandled")
            await send_problem(
                send,
                problem_body(
                    status=500,
                    code="internal-error",
                    title="Internal error",
                    detail="something went wrong on our side; the request id says where",
                    instance=scope.get("path"),
                ),
            )
