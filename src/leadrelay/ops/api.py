from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from leadrelay.core.clock import utcnow
from leadrelay.identity.deps import CanReadDeadLetters, CanReplayDeadLetters, SessionDep
from leadrelay.ops import service

router = APIRouter(tags=["operations"])


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_name: str
    queue: str
    payload: dict[str, Any]
    error: str
    attempts: int
    job_id: int | None
    correlation_id: str | None
    created_at: datetime
    replayed_at: datetime | None
    replay_job_id: int | None


@router.get("/v1/dead-letters")
async def list_dead_letters(
    session: SessionDep, _: CanReadDeadLetters, include_replayed: bool = True
) -> list[DeadLetterOut]:
    letters = await service.list_dead_letters(session, include_replayed=include_replayed)
    return [DeadLetterOut.model_validate(x) for x in letters]


@router.get("/v1/dead-letters/{letter_id}")
async def get_dead_letter(
    letter_id: uuid.UUID, session: SessionDep, _: CanReadDeadLetters
) -> DeadLetterOut:
    return DeadLetterOut.model_validate(await service.get_dead_letter(session, letter_id))


@router.post("/v1/dead-letters/{letter_id}/replay")
async def replay_dead_letter(
    letter_id: uuid.UUID, session: SessionDep, actor: CanReplayDeadLetters
) -> DeadLetterOut:
    letter = await service.replay_dead_letter(session, letter_id, actor=actor, now=utcnow())
    return DeadLetterOut.model_validate(letter)


@router.get("/health", tags=["operations"])
async def health(request: Request) -> JSONResponse:
    """Database reachability, queue depth and lag, and the age of the last worker heartbeat."""
    try:
        async with request.app.state.db.session() as session:
            report = await service.check_health(session, now=utcnow())
    except Exception:
        return JSONResponse({"status": "down", "database": "unreachable"}, status_code=503)
    body = {
        "status": report.status,
        "database": "ok",
        "queue": {"todo": report.queue_todo, "lag_seconds": round(report.queue_lag_seconds, 3)},
        "worker": {
            "last_heartbeat_age_seconds": None
            if report.worker_age_seconds is None
            else round(report.worker_age_seconds, 3)
        },
        # Outreach providers' circuit breakers: "open" means deliveries wait for it.
        "providers": {
            c.provider: {
                "state": c.state,
                "consecutive_failures": c.consecutive_failures,
                "opened_until": c.opened_until.isoformat() if c.opened_until else None,
                "last_error": c.last_error,
            }
            for c in report.circuits
        },
    }
    return JSONResponse(body, status_code=200)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    from leadrelay.telemetry.metrics import refresh_metrics

    await refresh_metrics(request.app.state.db)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
