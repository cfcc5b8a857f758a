"""The console's session cookie, its transaction, CSRF and permission checks.

Every console route depends on one of the aliases at the bottom: `page(P)` for a GET that needs
permission P, `action(P)` for a POST that also proves its CSRF token.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.console.errors import ConsoleProblem, LoginRequired
from leadrelay.console.rendering import NAV, NavItem
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.errors import LeadRelayError, Unauthenticated
from leadrelay.core.settings import Settings
from leadrelay.identity import service
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import ConsoleIdentity, OpenedSession, Principal

SESSION_COOKIE = "lr_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def console_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per console request, committed before the response leaves (function
    scope), rolled back when the route raises; domain errors become console problems here."""
    try:
        async with database(request).sessions() as session, session.begin():
            yield session
    except LeadRelayError as error:
        raise ConsoleProblem.from_error(error) from error
    except RequestValidationError as error:
        raise ConsoleProblem(422, "Invalid request", "The request has invalid fields.") from error


SessionDep = Annotated[AsyncSession, Depends(console_session, scope="function")]


@dataclass(frozen=True, slots=True)
class Console:
    """The signed-in user's view of the console for one request."""

    session: AsyncSession
    identity: ConsoleIdentity
    tenant_name: str

    @property
    def principal(self) -> Principal:
        return self.identity.principal

    @property
    def csrf_token(self) -> str:
        return self.identity.csrf_token

    def can(self, permission: Permission | str) -> bool:
        return self.principal.can(Permission(permission))

    @property
    def nav(self) -> list[NavItem]:
        return [item for item in NAV if self.can(item.permission)]


def _requested_url(request: Request) -> str:
    if request.method != "GET":
        return "/console"
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def get_console(request: Request, session: SessionDep) -> Console:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired(_requested_url(request))
    try:
        identity = await service.authenticate_session(session, token, now=utcnow())
    except Unauthenticated as error:
        raise LoginRequired(_requested_url(request)) from error
    tenant = await service.get_tenant(session, identity.principal.tenant_id)
    console = Console(session, identity, tenant.name)
    request.state.console = console  # the layout and error pages read it
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


async def _submitted_csrf_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def check_csrf(request: Request, console: Console) -> None:
    submitted = await _submitted_csrf_token(request)
    if not submitted or not hmac.compare_digest(submitted.encode(), console.csrf_token.encode()):
        raise ConsoleProblem(
            403, "Request refused", "The form expired or did not come from this console."
        )


def _refusal(console: Console, permission: Permission) -> str:
    role = console.principal.role.value
    return f"The {role} role does not include the {permission.value!r} permission."


ConsoleCheck = Callable[..., Coroutine[Any, Any, Console]]


def page(permission: Permission) -> ConsoleCheck:
    """A page that needs `permission`."""

    async def check(console: ConsoleDep) -> Console:
        if not console.can(permission):
            raise ConsoleProblem.forbidden(_refusal(console, permission))
        return console

    return check


def action(permission: Permission) -> ConsoleCheck:
    """A state-changing request: a valid CSRF token first, then `permission`."""

    async def check(request: Request, console: ConsoleDep) -> Console:
        await check_csrf(request, console)
        if not console.can(permission):
            raise ConsoleProblem.forbidden(_refusal(console, permission))
        return console

    return check


def set_session_cookie(response: Response, opened: OpenedSession, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=settings.session_ttl_hours * 3600,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=settings.env == "production",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=settings.env == "production",
    )


P = Permission
# One alias per permission a console route checks; signatures read `console: ViewUsers`.
ViewDashboard = Annotated[Console, Depends(page(P.TENANT_READ))]
SignedIn = Annotated[Console, Depends(action(P.TENANT_READ))]
ViewUsers = Annotated[Console, Depends(page(P.USERS_READ))]
ManageUsers = Annotated[Console, Depends(action(P.USERS_MANAGE))]
ViewApiKeys = Annotated[Console, Depends(page(P.API_KEYS_MANAGE))]
ManageApiKeys = Annotated[Console, Depends(action(P.API_KEYS_MANAGE))]
ViewAudit = Annotated[Console, Depends(page(P.AUDIT_READ))]
ExportAudit = Annotated[Console, Depends(page(P.AUDIT_EXPORT))]
ViewDeadLetters = Annotated[Console, Depends(page(P.DEAD_LETTERS_READ))]
ReplayDeadLetters = Annotated[Console, Depends(action(P.DEAD_LETTERS_REPLAY))]
ViewLeads = Annotated[Console, Depends(page(P.LEADS_READ))]
WriteLeads = Annotated[Console, Depends(action(P.LEADS_WRITE))]
ViewScoring = Annotated[Console, Depends(page(P.SCORING_READ))]
ManageScoring = Annotated[Console, Depends(action(P.SCORING_MANAGE))]
ViewRouting = Annotated[Console, Depends(page(P.ROUTING_READ))]
# The simulator writes nothing, so reading the routing setup is enough to run it.
SimulateRouting = Annotated[Console, Depends(action(P.ROUTING_READ))]
ViewApprovals = Annotated[Console, Depends(page(P.DRAFTS_READ))]
ReviewDrafts = Annotated[Console, Depends(action(P.APPROVALS_REVIEW))]
ViewTemplates = Annotated[Console, Depends(page(P.DRAFTS_READ))]
WriteDrafts = Annotated[Console, Depends(action(P.DRAFTS_WRITE))]
ManageTemplates = Annotated[Console, Depends(action(P.TEMPLATES_MANAGE))]
ViewOutreach = Annotated[Console, Depends(page(P.OUTREACH_READ))]
# Checking an address writes nothing, so reading the lists is enough; it is a POST so the address
# stays out of URLs and the browser's history.
CheckSuppressions = Annotated[Console, Depends(action(P.OUTREACH_READ))]
ManageSuppressions = Annotated[Console, Depends(action(P.SUPPRESSIONS_MANAGE))]
SetOutreachPolicy = Annotated[Console, Depends(action(P.OUTREACH_POLICY))]
ViewCampaigns = Annotated[Console, Depends(page(P.OUTREACH_READ))]
# Creating, activating, pausing, stopping and running a campaign: each run may send.
RunCampaigns = Annotated[Console, Depends(action(P.OUTREACH_SEND))]
