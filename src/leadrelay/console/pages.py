"""The console's one router: every area's routes, and the static files they use."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from leadrelay.console import (
    api_keys,
    approvals,
    audit,
    campaigns,
    consents,
    dashboard,
    dead_letters,
    dedup,
    drafting,
    dsar,
    funnel,
    imports,
    leads,
    login,
    outreach,
    posture,
    retention,
    routing,
    scoring,
    suppressions,
    users,
)

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR, check_dir=False)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/console", status_code=303)


for area in (
    login,
    dashboard,
    leads,
    imports,
    dedup,
    scoring,
    routing,
    approvals,
    drafting,
    outreach,
    campaigns,
    funnel,
    suppressions,
    consents,
    users,
    api_keys,
    audit,
    dsar,
    posture,
    retention,
    dead_letters,
):
    router.include_router(area.router)
