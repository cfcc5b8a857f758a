"""The dashboard: the tenant at a glance, each tile shown only to roles that may see it."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from leadrelay.compliance import audit
from leadrelay.console.auth import ViewDashboard
from leadrelay.console.rendering import render
from leadrelay.core.clock import utcnow
from leadrelay.identity import service
from leadrelay.identity.permissions import Permission
from leadrelay.ops import service as ops

router = APIRouter()

# The dashboard counts dead letters up to this many; beyond it the tile says "N+".
DEAD_LETTER_COUNT_LIMIT = 500
RECENT_EVENTS = 6


@dataclass(frozen=True, slots=True)
class Tile:
    label: str
    value: str
    href: str
    tone: str  # "neutral" | "good" | "warn" | "bad"
    hint: str = ""


async def _tiles(console: ViewDashboard) -> list[Tile]:
    session = console.session
    tiles: list[Tile] = []
    if console.can(Permission.USERS_READ):
        users = await service.list_users(session)
        active = sum(1 for user in users if user.is_active)
        tiles.append(
            Tile("Users", str(len(users)), "/console/users", "neutral", f"{active} active")
        )
    if console.can(Permission.API_KEYS_MANAGE):
        keys = await service.list_api_keys(session)
        live = sum(1 for key in keys if key.revoked_at is None)
        tiles.append(
            Tile(
                "Active API keys", str(live), "/console/api-keys", "neutral", f"{len(keys)} issued"
            )
        )
    if console.can(Permission.DEAD_LETTERS_READ):
        letters = await ops.list_dead_letters(
            session, include_replayed=False, limit=DEAD_LETTER_COUNT_LIMIT
        )
        count = f"{len(letters)}+" if len(letters) >= DEAD_LETTER_COUNT_LIMIT else str(len(letters))
        tiles.append(
            Tile(
                "Dead letters",
                count,
                "/console/dead-letters",
                "warn" if letters else "good",
                "waiting for replay" if letters else "nothing failed",
            )
        )
    if console.can(Permission.AUDIT_READ):
        report = await audit.verify_chain(session, console.principal.tenant_id)
        tiles.append(
            Tile(
                "Audit chain",
                "Intact" if report.ok else "Broken",
                "/console/audit",
                "good" if report.ok else "bad",
                f"{report.checked} links checked"
                if report.ok
                else report.reason or "verification failed",
            )
        )
    return tiles


@router.get("/console")
async def dashboard(request: Request, console: ViewDashboard) -> Response:
    health = await ops.check_health(console.session, now=utcnow())
    recent = (
        await audit.list_events(console.session, audit.AuditFilter(), limit=RECENT_EVENTS)
        if console.can(Permission.AUDIT_READ)
        else []
    )
    return render(
        request,
        "dashboard.html",
        {"tiles": await _tiles(console), "health": health, "recent": recent},
    )
