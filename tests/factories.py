"""Plain factory functions: each test makes its own tenant, so tests never share rows."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.identity import service
from leadrelay.identity.models import Role

_counter = itertools.count()
PASSWORD = "correct horse battery staple"


@dataclass
class TenantCtx:
    id: uuid.UUID
    slug: str
    owner: service.Principal
    db: Database

    async def api_key(self, role: Role = Role.OWNER, scopes: list[str] | None = None) -> str:
        async with self.db.session(self.id) as session:
            issued = await service.create_api_key(
                session,
                self.owner,
                name=f"test {role.value}",
                role=role,
                scopes=scopes,
                now=utcnow(),
            )
        return issued.token

    async def headers(self, role: Role = Role.OWNER) -> dict[str, str]:
        return {"authorization": f"Bearer {await self.api_key(role)}"}

    async def user(self, role: Role = Role.OWNER, email: str | None = None) -> str:
        email = email or f"{role.value}-{uuid.uuid4().hex[:8]}@{self.slug}.test"
        async with self.db.session(self.id) as session:
            await service.create_user(
                session,
                self.owner,
                email=email,
                name=role.value.title(),
                role=role,
                password=PASSWORD,
                now=utcnow(),
            )
        return email


class TenantFactory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str | None = None) -> TenantCtx:
        slug = f"t{next(_counter)}-{uuid.uuid4().hex[:8]}"
        async with self.db.session() as session:
            tenant = await service.create_tenant(
                session, name=name or slug, slug=slug, now=utcnow()
            )
        return TenantCtx(tenant.id, slug, service.system_principal(tenant.id), self.db)
