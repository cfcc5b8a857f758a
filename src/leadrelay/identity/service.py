"""Tenants, users, API keys, console sessions and login throttling. No HTTP here."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.compliance.audit import AuditEntry, record
from leadrelay.core.db import set_tenant
from leadrelay.core.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthenticated
from leadrelay.core.security import (
    api_key_prefix,
    generate_api_key,
    hash_password,
    hash_token,
    tokens_match,
    verify_password,
)
from leadrelay.identity.models import ApiKey, ConsoleSession, LoginThrottle, Role, Tenant, User
from leadrelay.identity.permissions import Permission, can_grant, permissions_for

# last_used_at is written at most this often per key, so that a hot key does not turn every
# request into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class UserNotFound(NotFound):
    """The user does not exist."""


class ApiKeyNotFound(NotFound):
    """The API key does not exist."""


class EmailAlreadyUsed(Conflict):
    """A user with this e-mail address already exists."""

    code = "email-already-used"


class CannotGrantRole(Forbidden):
    """You cannot grant, or manage holders of, a role with more rights than yours."""

    code = "cannot-grant-role"


def check_can_grant(actor: Principal, role: Role) -> None:
    if not can_grant(actor.permissions, role):
        raise CannotGrantRole(f"you cannot grant or manage the {role.value!r} role")


class LoginThrottled(TooManyRequests):
    """Too many failed logins: try again in a few minutes."""

    code = "login-throttled"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a console user or an API key, always inside one tenant."""

    tenant_id: uuid.UUID
    kind: str  # "user" | "api_key" | "system"
    id: uuid.UUID | None
    name: str
    role: Role
    permissions: frozenset[Permission]

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def audit(
        self,
        action: str,
        *,
        target_type: str | None = None,
        target_id: object = None,
        **data: object,
    ) -> AuditEntry:
        return AuditEntry(
            action=action,
            actor_type=self.kind,
            actor_id=str(self.id) if self.id else None,
            target_type=target_type,
            target_id=str(target_id) if target_id is not None else None,
            data=dict(data),
        )


def system_principal(tenant_id: uuid.UUID) -> Principal:
    return Principal(tenant_id, "system", None, "system", Role.OWNER, permissions_for(Role.OWNER))


# --- tenants -------------------------------------------------------------------------------


async def create_tenant(
    session: AsyncSession,
    *,
    name: str,
    slug: str,
    now: datetime,
    settings: dict[str, object] | None = None,
) -> Tenant:
    """Create a tenant and bind the session's transaction to it."""
    tenant_id = uuid.uuid4()
    await set_tenant(session, tenant_id)
    tenant = Tenant(id=tenant_id, name=name, slug=slug, settings=settings or {})
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError as error:
        raise Conflict(f"a tenant with slug {slug!r} already exists") from error
    await record(
        session,
        tenant_id,
        AuditEntry("tenant.created", target_type="tenant", target_id=str(tenant_id)),
        now=now,
    )
    return tenant


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


async def find_tenant_id_by_slug(session: AsyncSession, slug: str) -> uuid.UUID | None:
    """Operator look-up (owner connection); RLS hides other tenants from the app role."""
    return await session.scalar(select(Tenant.id).where(Tenant.slug == slug))


# --- users ---------------------------------------------------------------------------------


async def create_user(
    session: AsyncSession,
    actor: Principal,
    *,
    email: str,
    name: str,
    role: Role,
    password: str,
    now: datetime,
) -> User:
    check_can_grant(actor, role)
    user = User(
        tenant_id=actor.tenant_id,
        email=email.strip(),
        name=name.strip(),
        role=role,
        password_hash=hash_password(password),
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError as error:
        raise EmailAlreadyUsed() from error
    # The e-mail is personal data: the audit row carries only its hash.
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "user.created",
            target_type="user",
            target_id=user.id,
            role=role.value,
            email_sha256=hashlib.sha256(email.lower().encode()).hexdigest(),
        ),
        now=now,
    )
    return user


async def list_users(session: AsyncSession) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.created_at)))


async def access_user(session: AsyncSession, actor: Principal, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None or user.tenant_id != actor.tenant_id:
        raise UserNotFound()
    return user


async def update_user(
    session: AsyncSession,
    actor: Principal,
    user_id: uuid.UUID,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
    name: str | None = None,
    now: datetime,
) -> User:
    user = await access_user(session, actor, user_id)
    check_can_grant(actor, Role(user.role))
    changes: dict[str, object] = {}
    if role is not None and role != user.role:
        check_can_grant(actor, role)
        user.role, changes["role"] = role, role.value
    if is_active is not None and is_active != user.is_active:
        user.is_active, changes["is_active"] = is_active, is_active
        if not is_active:
            await session.execute(
                update(ConsoleSession)
                .where(ConsoleSession.user_id == user.id, ConsoleSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )
    if name is not None and name != user.name:
        user.name, changes["name_changed"] = name, True
    if changes:
        await record(
            session,
            actor.tenant_id,
            actor.audit("user.updated", target_type="user", target_id=user.id, **changes),
            now=now,
        )
    return user


# --- API keys ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    key: ApiKey
    token: str  # the only time the full key exists outside the caller


async def create_api_key(
    session: AsyncSession,
    actor: Principal,
    *,
    name: str,
    role: Role,
    scopes: list[str] | None = None,
    now: datetime,
) -> IssuedApiKey:
    check_can_grant(actor, role)
    issued = generate_api_key()
    key = ApiKey(
        tenant_id=actor.tenant_id,
        name=name,
        prefix=issued.prefix,
        key_hash=issued.key_hash,
        role=role,
        scopes=sorted(set(scopes or [])),
        created_by=actor.id if actor.kind == "user" else None,
    )
    session.add(key)
    await session.flush()
    await record(
        session,
        actor.tenant_id,
        actor.audit(
            "api_key.created",
            target_type="api_key",
            target_id=key.id,
            prefix=key.prefix,
            role=role.value,
            scopes=key.scopes,
        ),
        now=now,
    )
    return IssuedApiKey(key=key, token=issued.token)


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))


async def revoke_api_key(
    session: AsyncSession, actor: Principal, key_id: uuid.UUID, *, now: datetime
) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.tenant_id != actor.tenant_id:
        raise ApiKeyNotFound()
    check_can_grant(actor, Role(key.role))
    if key.revoked_at is None:
        key.revoked_at = now
        await record(
            session,
            actor.tenant_id,
            actor.audit(
                "api_key.revoked", target_type="api_key", target_id=key.id, prefix=key.prefix
            ),
            now=now,
        )
    return key


async def authenticate_api_key(session: AsyncSession, token: str, *, now: datetime) -> Principal:
    """Find the key by its prefix (before any tenant is known), check its hash in constant time,
    then bind the transaction to its tenant."""
    prefix = api_key_prefix(token)
    row = None
    if prefix is not None:
        row = (
            (await session.execute(text("SELECT * FROM auth_find_api_key(:p)"), {"p": prefix}))
            .mappings()
            .first()
        )
    if row is None or not tokens_match(token, row["key_hash"]) or row["revoked_at"] is not None:
        raise Unauthenticated("invalid or revoked API key")
    await set_tenant(session, row["tenant_id"])
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == row["id"])
        .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - LAST_USED_RESOLUTION))
        .values(last_used_at=now)
    )
    role = Role(row["role"])
    return Principal(
        row["tenant_id"],
        "api_key",
        row["id"],
        prefix or "",
        role,
        permissions_for(role, list(row["scopes"] or [])),
    )


# --- console sessions and login ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str  # the cookie value; only its hash is stored
    csrf_token: str
    principal: Principal
    expires_at: datetime


def _throttle_key(email: str, address: str) -> str:
    return hashlib.sha256(f"{address}|{email.strip().lower()}".encode()).hexdigest()


async def _check_throttle(session: AsyncSession, key: str, *, now: datetime) -> None:
    locked_until = await session.scalar(
        select(LoginThrottle.locked_until).where(LoginThrottle.key == key)
    )
    if locked_until is not None and locked_until > now:
        raise LoginThrottled()


async def _note_failure(
    session: AsyncSession, key: str, *, now: datetime, max_failures: int, lockout: timedelta
) -> None:
    window_start = now - lockout
    insert = pg_insert(LoginThrottle).values(key=key, failures=1, window_started_at=now)
    statement = insert.on_conflict_do_update(
        index_elements=[LoginThrottle.key],
        set_={
            "failures": text(
                "CASE WHEN login_throttle.window_started_at < :window_start THEN 1 "
                "ELSE login_throttle.failures + 1 END"
            ),
            "window_started_at": text(
                "CASE WHEN login_throttle.window_started_at < :window_start THEN :now "
                "ELSE login_throttle.window_started_at END"
            ),
        },
    ).returning(LoginThrottle.failures)
    failures = await session.scalar(statement, {"window_start": window_start, "now": now})
    if failures is not None and failures >= max_failures:
        await session.execute(
            update(LoginThrottle).where(LoginThrottle.key == key).values(locked_until=now + lockout)
        )


async def login(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    address: str,
    now: datetime,
    ttl: timedelta,
    max_failures: int,
    lockout: timedelta,
) -> OpenedSession:
    """Check a console login. Failures are counted per (address, e-mail) and lock it out for
    `lockout` after `max_failures`; unknown e-mails cost the same time as known ones."""
    key = _throttle_key(email, address)
    await _check_throttle(session, key, now=now)
    row = (
        (await session.execute(text("SELECT * FROM auth_find_user(:e)"), {"e": email.strip()}))
        .mappings()
        .first()
    )
    valid = verify_password(row["password_hash"] if row else None, password)
    if row is None or not valid or not row["is_active"]:
        await _note_failure(session, key, now=now, max_failures=max_failures, lockout=lockout)
        raise Unauthenticated("wrong e-mail or password")
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
    tenant_id: uuid.UUID = row["tenant_id"]
    await set_tenant(session, tenant_id)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    opened = ConsoleSession(
        tenant_id=tenant_id,
        user_id=row["id"],
        token_hash=hash_token(token),
        csrf_token=csrf,
        expires_at=now + ttl,
    )
    session.add(opened)
    await session.execute(update(User).where(User.id == row["id"]).values(last_login_at=now))
    user = await session.get(User, row["id"])
    if user is None:
        raise Unauthenticated("wrong e-mail or password")
    principal = _user_principal(user)
    await record(
        session,
        tenant_id,
        principal.audit("user.login", target_type="user", target_id=user.id),
        now=now,
    )
    return OpenedSession(
        token=token, csrf_token=csrf, principal=principal, expires_at=opened.expires_at
    )


def _user_principal(user: User) -> Principal:
    role = Role(user.role)
    return Principal(user.tenant_id, "user", user.id, user.name, role, permissions_for(role))


@dataclass(frozen=True, slots=True)
class ConsoleIdentity:
    principal: Principal
    session_id: uuid.UUID
    csrf_token: str
    email: str


async def authenticate_session(
    session: AsyncSession, token: str, *, now: datetime
) -> ConsoleIdentity:
    row = (
        (
            await session.execute(
                text("SELECT * FROM auth_find_session(:h)"), {"h": hash_token(token)}
            )
        )
        .mappings()
        .first()
    )
    if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
        raise Unauthenticated("session expired")
    await set_tenant(session, row["tenant_id"])
    user = await session.get(User, row["user_id"])
    if user is None or not user.is_active:
        raise Unauthenticated("session expired")
    return ConsoleIdentity(_user_principal(user), row["id"], row["csrf_token"], user.email)


async def logout(session: AsyncSession, identity: ConsoleIdentity, *, now: datetime) -> None:
    await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == identity.session_id)
        .values(revoked_at=now)
    )
    await record(
        session,
        identity.principal.tenant_id,
        identity.principal.audit(
            "user.logout", target_type="user", target_id=identity.principal.id
        ),
        now=now,
    )
