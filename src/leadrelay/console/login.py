"""Signing in and out of the console.

The login form carries its own double-submit token (a cookie scoped to the login path and a
hidden field) so another site cannot sign a visitor into someone else's account.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from leadrelay.console.auth import (
    SESSION_COOKIE,
    SessionDep,
    SignedIn,
    clear_session_cookie,
    database,
    set_session_cookie,
    settings_of,
)
from leadrelay.console.rendering import Notice, render
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import Unauthenticated
from leadrelay.identity import service
from leadrelay.identity.service import LoginThrottled

LOGIN_PATH = "/console/login"
LOGIN_COOKIE = "lr_login"

router = APIRouter()


def safe_next(value: str | None) -> str:
    """Only a path inside the console: never another host (open redirect)."""
    if (
        not value
        or not value.startswith("/console")
        or value.startswith("//")
        or "\\" in value
        or any(ord(character) < 32 for character in value)
    ):
        return "/console"
    return value


def _login_form(
    request: Request,
    *,
    next_url: str,
    email: str = "",
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"next_url": next_url, "email": email, "login_token": token, "notices": notices or []},
        status=status,
    )
    settings = settings_of(request)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=LOGIN_PATH,
        httponly=True,
        samesite="strict",
        secure=settings.env == "production",
    )
    return response


async def _has_live_session(request: Request) -> bool:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return False
    async with database(request).session() as session:
        try:
            await service.authenticate_session(session, token, now=utcnow())
        except Unauthenticated:
            return False
    return True


@router.get(LOGIN_PATH)
async def login_page(
    request: Request,
    next_url: Annotated[str, Query(alias="next", max_length=2000)] = "/console",
    signed_out: bool = False,
) -> Response:
    next_url = safe_next(next_url)
    if await _has_live_session(request):
        return RedirectResponse(next_url, status_code=303)
    notices = [Notice("info", "You are signed out.")] if signed_out else []
    return _login_form(request, next_url=next_url, notices=notices)


@router.post(LOGIN_PATH)
async def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next_url: Annotated[str, Form(alias="next", max_length=2000)] = "/console",
    login_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    next_url = safe_next(next_url)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not login_token or not hmac.compare_digest(login_token.encode(), cookie.encode()):
        notice = Notice("error", "The login form expired. Please sign in again.")
        return _login_form(request, next_url=next_url, email=email, notices=[notice], status=403)
    settings = settings_of(request)
    try:
        opened = await service.login(
            session,
            email=email,
            password=password,
            address=request.client.host if request.client else "unknown",
            now=utcnow(),
            ttl=timedelta(hours=settings.session_ttl_hours),
            max_failures=settings.login_max_failures,
            lockout=timedelta(minutes=settings.login_lockout_minutes),
        )
    except LoginThrottled:
        # Caught, not raised: the failure counter must commit with this transaction.
        notice = Notice(
            "error",
            "Too many failed sign-ins. Please wait "
            f"{settings.login_lockout_minutes} minutes and try again.",
        )
        return _login_form(request, next_url=next_url, email=email, notices=[notice], status=429)
    except Unauthenticated:
        notice = Notice("error", "Wrong e-mail or password.")
        return _login_form(request, next_url=next_url, email=email, notices=[notice], status=401)
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, opened, settings)
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return response


@router.post("/console/logout")
async def logout(request: Request, console: SignedIn) -> Response:
    await service.logout(console.session, console.identity, now=utcnow())
    response = RedirectResponse(f"{LOGIN_PATH}?signed_out=true", status_code=303)
    clear_session_cookie(response, settings_of(request))
    return response
