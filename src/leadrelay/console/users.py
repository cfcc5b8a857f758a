"""Users: the tenant's people, their roles, and switching them on and off."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from leadrelay.console.auth import Console, ManageUsers, ViewUsers
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.forms import field_errors, grantable_roles
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.identity import service
from leadrelay.identity.permissions import Permission
from leadrelay.identity.schemas import UserCreate

router = APIRouter(prefix="/console/users")


async def _panel(
    request: Request,
    console: Console,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "users": await service.list_users(console.session),
        "roles": grantable_roles(console.principal),
        "can_manage": console.can(Permission.USERS_MANAGE),
        "form": form or {},
        "errors": errors or {},
        "panel_notices": notices or [],
    }
    template = "users/_panel.html" if is_htmx(request) else "users/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def users_page(request: Request, console: ViewUsers) -> Response:
    return await _panel(request, console)


@router.post("")
async def create_user(
    request: Request,
    console: ManageUsers,
    email: Annotated[str, Form(max_length=320)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    form = {"email": email, "name": name, "role": role}
    try:
        body = UserCreate.model_validate(
            {"email": email, "name": name, "role": role, "password": password}
        )
    except ValidationError as error:
        return await _panel(request, console, form=form, errors=field_errors(error), status=422)
    if body.role not in grantable_roles(console.principal):
        errors = {"role": f"You cannot grant the {body.role.value} role."}
        return await _panel(request, console, form=form, errors=errors, status=403)
    try:
        await service.create_user(
            console.session,
            console.principal,
            email=body.email,
            name=body.name,
            role=body.role,
            password=body.password,
            now=utcnow(),
        )
    except service.EmailAlreadyUsed as error:
        return await _panel(request, console, form=form, errors={"email": error.detail}, status=409)
    notice = Notice("success", f"{body.name} can now sign in as {body.email}.")
    return await _panel(request, console, notices=[notice])


async def _set_active(
    request: Request, console: Console, user_id: uuid.UUID, *, active: bool
) -> Response:
    if not active and user_id == console.principal.id:
        raise ConsoleProblem(409, "Not possible", "You cannot deactivate your own account.")
    user = await service.update_user(
        console.session, console.principal, user_id, is_active=active, now=utcnow()
    )
    if is_htmx(request):
        return render(request, "users/_row.html", {"user": user, "can_manage": True})
    return await _panel(request, console)


@router.post("/{user_id}/activate")
async def activate_user(request: Request, console: ManageUsers, user_id: uuid.UUID) -> Response:
    return await _set_active(request, console, user_id, active=True)


@router.post("/{user_id}/deactivate")
async def deactivate_user(request: Request, console: ManageUsers, user_id: uuid.UUID) -> Response:
    return await _set_active(request, console, user_id, active=False)
