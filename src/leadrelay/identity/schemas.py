from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from leadrelay.core.schemas import Input
from leadrelay.identity.models import Role
from leadrelay.identity.permissions import Permission


class Me(BaseModel):
    tenant_id: uuid.UUID
    tenant_name: str
    kind: str
    id: uuid.UUID | None
    role: Role
    permissions: list[Permission]


class UserCreate(Input):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    role: Role
    password: str = Field(min_length=12, max_length=200)


class UserUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    is_active: bool | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class ApiKeyCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    scopes: list[Permission] = Field(default_factory=list, max_length=len(Permission))


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyIssued(ApiKeyOut):
    key: str = Field(description="The full key. Shown once: store it now.")
