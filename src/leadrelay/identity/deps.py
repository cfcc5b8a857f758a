"""FastAPI dependencies: the request's transaction, its principal, and permission checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.errors import Forbidden, Unauthenticated
from leadrelay.identity import service
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import Principal


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed at the edge (here), rolled back on error."""
    db = get_db(request)
    async with db.sessions() as session, session.begin():
        yield session


# scope="function": the transaction commits before the response is sent, so a client never
# reads a 2xx for a change that then fails to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


async def get_principal(request: Request, session: SessionDep) -> Principal:
    token = _bearer(request)
    if not token:
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    principal = await service.authenticate_api_key(session, token, now=utcnow())
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise Forbidden(f"this action needs the {permission.value!r} permission")
        return principal

    return check


# One alias per permission a route checks: signatures then read `actor: CanManageUsers`.
CanReadUsers = Annotated[Principal, Depends(require(Permission.USERS_READ))]
CanManageUsers = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
CanManageApiKeys = Annotated[Principal, Depends(require(Permission.API_KEYS_MANAGE))]
CanReadAudit = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
CanExportAudit = Annotated[Principal, Depends(require(Permission.AUDIT_EXPORT))]
CanReadDeadLetters = Annotated[Principal, Depends(require(Permission.DEAD_LETTERS_READ))]
CanReplayDeadLetters = Annotated[Principal, Depends(require(Permission.DEAD_LETTERS_REPLAY))]
CanReadWebhooks = Annotated[Principal, Depends(require(Permission.WEBHOOKS_READ))]
CanManageWebhooks = Annotated[Principal, Depends(require(Permission.WEBHOOKS_MANAGE))]
CanReadSources = Annotated[Principal, Depends(require(Permission.SOURCES_READ))]
CanManageSources = Annotated[Principal, Depends(require(Permission.SOURCES_MANAGE))]
CanReadLeads = Annotated[Principal, Depends(require(Permission.LEADS_READ))]
CanWriteLeads = Annotated[Principal, Depends(require(Permission.LEADS_WRITE))]
CanReadScoring = Annotated[Principal, Depends(require(Permission.SCORING_READ))]
CanManageScoring = Annotated[Principal, Depends(require(Permission.SCORING_MANAGE))]
CanReadRouting = Annotated[Principal, Depends(require(Permission.ROUTING_READ))]
CanManageRouting = Annotated[Principal, Depends(require(Permission.ROUTING_MANAGE))]
CanReadDrafts = Annotated[Principal, Depends(require(Permission.DRAFTS_READ))]
CanWriteDrafts = Annotated[Principal, Depends(require(Permission.DRAFTS_WRITE))]
CanReview = Annotated[Principal, Depends(require(Permission.APPROVALS_REVIEW))]
CanManageTemplates = Annotated[Principal, Depends(require(Permission.TEMPLATES_MANAGE))]
CanSetApprovalPolicy = Annotated[Principal, Depends(require(Permission.APPROVAL_POLICY))]
CanReadOutreach = Annotated[Principal, Depends(require(Permission.OUTREACH_READ))]
CanSend = Annotated[Principal, Depends(require(Permission.OUTREACH_SEND))]
CanManageSuppressions = Annotated[Principal, Depends(require(Permission.SUPPRESSIONS_MANAGE))]
CanSetOutreachPolicy = Annotated[Principal, Depends(require(Permission.OUTREACH_POLICY))]
