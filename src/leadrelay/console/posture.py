"""The compliance posture in the console: each safeguard as a pass, warn or fail card, with the
page that fixes it, and the sending domains' SPF, DKIM and DMARC in detail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from leadrelay.compliance import domains, posture
from leadrelay.console.auth import Console, page, settings_of
from leadrelay.console.rendering import render
from leadrelay.core.clock import utcnow
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import get_tenant

router = APIRouter(prefix="/console/posture")

ViewPosture = Annotated[Console, Depends(page(Permission.COMPLIANCE_READ))]

# The badge tone of each verdict (the classes of _macros.status_badge).
TONES = {"pass": "good", "warn": "warn", "fail": "bad", "unknown": "muted"}


@router.get("")
async def posture_page(request: Request, console: ViewPosture) -> Response:
    settings = settings_of(request)
    now = utcnow()
    snapshot = await posture.compliance_posture(
        console.session, console.principal.tenant_id, settings, now=now
    )
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    reports = await domains.check_sending_domains(tenant, settings, now=now)
    return render(
        request,
        "posture/page.html",
        {"posture": snapshot, "domains": reports, "tones": TONES},
    )
