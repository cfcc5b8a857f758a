"""The signed-webhook receiver's fast path: plain ASGI ahead of FastAPI's routing.

Providers send many small deliveries; for each, FastAPI's routing, exception middleware,
dependency solving and Request objects cost more CPU than verifying and storing it. This
middleware answers `POST /v1/inbound/{uuid}` itself with the same code as the documented route
(`inbound.api.handle_delivery`), inside the same outer middleware (request ids, logs, metrics,
body limit). Everything else passes through untouched.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from leadrelay.core.errors import LeadRelayError, problem_body
from leadrelay.core.http import ASGIApp, Receive, Scope, Send, send_body, send_problem
from leadrelay.core.logging import get_logger
from leadrelay.inbound.api import handle_delivery

log = get_logger("leadrelay.inbound")
_PATH = re.compile(r"^/v1/inbound/([0-9a-fA-F-]{32,36})$")


class InboundFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
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
            code, body = await handle_delivery(app.state, endpoint_id, headers, b"".join(chunks))
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
