"""Compliance posture routes: the snapshot of the tenant's safeguards, and its sending domains'
SPF, DKIM and DMARC checks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from leadrelay.compliance import domains, posture
from leadrelay.compliance.domains import AuthStatus
from leadrelay.core.clock import utcnow
from leadrelay.identity.deps import SessionDep, require
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import Principal, get_tenant

router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

CanReadCompliance = Annotated[Principal, Depends(require(Permission.COMPLIANCE_READ))]


class PostureItemOut(BaseModel):
    key: str
    label: str
    status: AuthStatus
    value: str
    detail: str
    href: str


class PostureOut(BaseModel):
    status: AuthStatus
    checked_at: datetime
    items: list[PostureItemOut]


class CheckOut(BaseModel):
    status: AuthStatus
    detail: str
    record: str | None


class DomainOut(BaseModel):
    domain: str
    status: AuthStatus
    spf: CheckOut
    dkim: CheckOut
    dmarc: CheckOut
    checked_at: datetime


def _check_out(check: domains.CheckResult) -> CheckOut:
    return CheckOut(status=check.status, detail=check.detail, record=check.record)


def domain_out(report: domains.DomainReport) -> DomainOut:
    return DomainOut(
        domain=report.domain,
        status=report.status,
        spf=_check_out(report.spf),
        dkim=_check_out(report.dkim),
        dmarc=_check_out(report.dmarc),
        checked_at=report.checked_at,
    )


@router.get("/posture")
async def get_posture(
    request: Request, session: SessionDep, actor: CanReadCompliance
) -> PostureOut:
    """Dry-run, approval, unsubscribe coverage, open data-subject requests, the last retention
    sweep, the audit chain, the sending domains and the suppression list, each pass, warn,
    fail or unknown, with the console page that fixes it. `status` is the worst of them."""
    snapshot = await posture.compliance_posture(
        session, actor.tenant_id, request.app.state.settings, now=utcnow()
    )
    return PostureOut(
        status=snapshot.status,
        checked_at=snapshot.checked_at,
        items=[
            PostureItemOut(
                key=i.key,
                label=i.label,
                status=i.status,
                value=i.value,
                detail=i.detail,
                href=i.href,
            )
            for i in snapshot.items
        ],
    )


@router.get("/domains")
async def get_sending_domains(
    request: Request, session: SessionDep, actor: CanReadCompliance
) -> list[DomainOut]:
    """SPF, DKIM and DMARC of each domain e-mail leaves from (the sender's, else the server's
    From). `unknown` when DNS does not answer or no DNS server is configured."""
    tenant = await get_tenant(session, actor.tenant_id)
    reports = await domains.check_sending_domains(tenant, request.app.state.settings, now=utcnow())
    return [domain_out(r) for r in reports]
