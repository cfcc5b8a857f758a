"""The FastAPI application factory: API, console, health and metrics in one ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from leadrelay.approvals.api import router as approvals_router
from leadrelay.capture.api import router as capture_router
from leadrelay.capture.dedup_api import router as dedup_router
from leadrelay.capture.provider_api import router as provider_router
from leadrelay.compliance.api import router as audit_router
from leadrelay.compliance.dsar_api import router as dsar_router
from leadrelay.compliance.posture_api import router as posture_router
from leadrelay.compliance.retention_api import router as retention_router
from leadrelay.core.db import Database, resolve_urls
from leadrelay.core.http import (
    BodyLimitMiddleware,
    JsonContentTypeMiddleware,
    RequestContextMiddleware,
    install_error_handlers,
)
from leadrelay.core.logging import configure_logging
from leadrelay.core.runtime import settle_process
from leadrelay.core.security import SecretBox, secret_keys
from leadrelay.core.settings import Settings, get_settings
from leadrelay.drafting.api import router as drafting_router
from leadrelay.identity.api import router as identity_router
from leadrelay.inbound.api import router as inbound_router
from leadrelay.inbound.fastpath import InboundFastPath
from leadrelay.ops.api import router as ops_router
from leadrelay.outreach.api import (
    DNC_UPLOAD_LIMIT,
    DNC_UPLOAD_PATH,
    UNSUBSCRIBE_PREFIX,
    unsubscribe_router,
)
from leadrelay.outreach.api import router as outreach_router
from leadrelay.outreach.voice_api import VOICE_PREFIX, voice_router
from leadrelay.routing.api import router as routing_router
from leadrelay.scoring.api import OUTCOMES_UPLOAD_LIMIT, OUTCOMES_UPLOAD_PATH
from leadrelay.scoring.api import router as scoring_router
from leadrelay.telemetry.api import TWILIO_STATUS_PATH
from leadrelay.telemetry.api import router as telemetry_router
from leadrelay.telemetry.inbound_api import BODY_LIMITS as REPLY_BODY_LIMITS
from leadrelay.telemetry.inbound_api import RAW_BODY_PATHS as REPLY_PATHS
from leadrelay.telemetry.inbound_api import router as replies_router
from leadrelay.telemetry.reports_api import router as reports_router
from leadrelay.webhooks.api import router as webhooks_router

# Routes that read their own raw body (signed inbound webhooks, file uploads).
# Routes that read their own bodies: signed webhooks (raw bytes), file uploads (multipart).
RAW_BODY_PREFIXES: tuple[str, ...] = (
    "/v1/inbound/",
    OUTCOMES_UPLOAD_PATH,
    DNC_UPLOAD_PATH,
    UNSUBSCRIBE_PREFIX,  # mail providers POST a form body (RFC 8058)
    VOICE_PREFIX,  # Twilio posts form bodies, signed
    TWILIO_STATUS_PATH,  # Twilio's delivery reports: a signed form
    *REPLY_PATHS,  # inbound replies: Twilio forms, e-mail as multipart
)


def secret_box_for(settings: Settings) -> SecretBox:
    return SecretBox(secret_keys(settings))


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owns_db = app.state.db is None
        if owns_db:
            app.state.db = Database(resolve_urls(settings, start_embedded=False))
        settle_process()
        try:
            yield
        finally:
            intake = getattr(app.state, "intake", None)
            if intake is not None:
                await intake.batcher.close()
            deliveries = getattr(app.state, "delivery_batcher", None)
            if deliveries is not None:
                await deliveries.close()
            drafter = getattr(app.state, "llm_drafter", None)
            if drafter is not None:
                await drafter.aclose()
            if owns_db:
                await app.state.db.dispose()

    app = FastAPI(
        title="LeadRelay",
        version="0.1.0",
        summary="Lead-to-conversation platform, compliance first.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.secret_box = secret_box_for(settings)

    install_error_handlers(app)
    app.include_router(ops_router)
    app.include_router(identity_router)
    app.include_router(audit_router)
    app.include_router(posture_router)
    app.include_router(retention_router)
    app.include_router(webhooks_router)
    app.include_router(inbound_router)
    app.include_router(capture_router)
    app.include_router(dedup_router)
    app.include_router(provider_router)
    app.include_router(scoring_router)
    app.include_router(routing_router)
    app.include_router(approvals_router)
    app.include_router(drafting_router)
    app.include_router(outreach_router)
    app.include_router(telemetry_router)
    app.include_router(unsubscribe_router)
    app.include_router(voice_router)
    app.include_router(reports_router)
    app.include_router(replies_router)
    app.include_router(dsar_router)
    from leadrelay.console import body_limits, mount_console

    mount_console(app)

    # Added innermost first: ids and logs see everything, then size, then content type, then
    # the signed-webhook receiver's fast path ahead of FastAPI's routing.
    app.add_middleware(InboundFastPath)
    app.add_middleware(JsonContentTypeMiddleware, raw_prefixes=RAW_BODY_PREFIXES)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits={
            **body_limits(),
            OUTCOMES_UPLOAD_PATH: OUTCOMES_UPLOAD_LIMIT,
            DNC_UPLOAD_PATH: DNC_UPLOAD_LIMIT,
            **REPLY_BODY_LIMITS,
        },
    )
    app.add_middleware(RequestContextMiddleware)
    return app
