from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from leadrelay.core.clock import utcnow
from leadrelay.identity import service
from leadrelay.identity.deps import (
    CanManageApiKeys,
    CanManageUsers,
    CanReadUsers,
    CurrentPrincipal,
    SessionDep,
)
from leadrelay.identity.schemas import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyOut,
    Me,
    UserCreate,
    UserOut,
    UserUpdate,
)

router = APIRouter(prefix="/v1", tags=["identity"])


@router.get("/me")
async def me(principal: CurrentPrincipal, session: SessionDep) -> Me:
    tenant = await service.get_tenant(session, principal.tenant_id)
    return Me(
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        kind=principal.kind,
        id=principal.id,
        role=principal.role,
        permissions=sorted(principal.permissions),
    )


@router.get("/users")
async def list_users(session: SessionDep, _: CanReadUsers) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await service.list_users(session)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, session: SessionDep, actor: CanManageUsers) -> UserOut:
    user = await service.create_user(
        session,
        actor,
        email=body.email,
        name=body.name,
        role=body.role,
        password=body.password,
        now=utcnow(),
    )
    return UserOut.model_validate(user)


@router.get("/users/{user_id}")
async def get_user(user_id: uuid.UUID, session: SessionDep, actor: CanReadUsers) -> UserOut:
    return UserOut.model_validate(await service.access_user(session, actor, user_id))


@router.patch("/users/{user_id}")
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    session: SessionDep,
    actor: CanManageUsers,
) -> UserOut:
    user = await service.update_user(
        session,
        actor,
        user_id,
        role=body.role,
        is_active=body.is_active,
        name=body.name,
        now=utcnow(),
    )
    return UserOut.model_validate(user)


@router.get("/api-keys")
async def list_api_keys(session: SessionDep, _: CanManageApiKeys) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in await service.list_api_keys(session)]


@router.post("/api-keys", status_code=status.HTTP_201_CREATED)
async def create_api_key(
    body: ApiKeyCreate, session: SessionDep, actor: CanManageApiKeys
) -> ApiKeyIssued:
    issued = await service.create_api_key(
        session,
        actor,
        name=body.name,
        role=body.role,
        scopes=[s.value for s in body.scopes],
        now=utcnow(),
    )
    out = ApiKeyOut.model_validate(issued.key)
    return ApiKeyIssued(**out.model_dump(), key=issued.token)


@router.delete("/api-keys/{key_id}")
async def revoke_api_key(
    key_id: uuid.UUID, session: SessionDep, actor: CanManageApiKeys
) -> ApiKeyOut:
    key = await service.revoke_api_key(session, actor, key_id, now=utcnow())
    return ApiKeyOut.model_validate(key)
