"""API keys: issue (the full key is shown once, in the response that created it) and revoke."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from leadrelay.console.auth import Console, ManageApiKeys, ViewApiKeys
from leadrelay.console.forms import field_errors, grantable_roles
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.identity import service
from leadrelay.identity.permissions import Permission
from leadrelay.identity.schemas import ApiKeyCreate

router = APIRouter(prefix="/console/api-keys")


async def _panel(
    request: Request,
    console: Console,
    *,
    issued: service.IssuedApiKey | None = None,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "keys": await service.list_api_keys(console.session),
        "roles": grantable_roles(console.principal),
        "scopes": sorted(console.principal.permissions),
        "issued": issued,
        "form": form or {"scopes": []},
        "errors": errors or {},
        "panel_notices": notices or [],
    }
    template = "api_keys/_panel.html" if is_htmx(request) else "api_keys/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def api_keys_page(request: Request, console: ViewApiKeys) -> Response:
    return await _panel(request, console)


@router.post("")
async def create_api_key(
    request: Request,
    console: ManageApiKeys,
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=len(Permission))] = None,
) -> Response:
    form: dict[str, Any] = {"name": name, "role": role, "scopes": scopes or []}
    try:
        body = ApiKeyCreate.model_validate({"name": name, "role": role, "scopes": scopes or []})
    except ValidationError as error:
        return await _panel(request, console, form=form, errors=field_errors(error), status=422)
    if body.role not in grantable_roles(console.principal):
        errors = {"role": f"You cannot grant the {body.role.value} role."}
        return await _panel(request, console, form=form, errors=errors, status=403)
    issued = await service.create_api_key(
        console.session,
        console.principal,
        name=body.name,
        role=body.role,
        scopes=[scope.value for scope in body.scopes],
        now=utcnow(),
    )
    return await _panel(request, console, issued=issued, status=201)


@router.post("/{key_id}/revoke")
async def revoke_api_key(request: Request, console: ManageApiKeys, key_id: uuid.UUID) -> Response:
    key = await service.revoke_api_key(console.session, console.principal, key_id, now=utcnow())
    if is_htmx(request):
        return render(request, "api_keys/_row.html", {"key": key})
    notice = Notice("success", f"The key {key.prefix}… is revoked.")
    return await _panel(request, console, notices=[notice])
