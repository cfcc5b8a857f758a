"""Form helpers shared by console pages: validation messages and role grants."""

from __future__ import annotations

from pydantic import ValidationError

from leadrelay.identity import permissions
from leadrelay.identity.models import Role
from leadrelay.identity.service import Principal


def field_errors(error: ValidationError) -> dict[str, str]:
    """First message per field, in words a person reads (pydantic's, minus its prefixes)."""
    errors: dict[str, str] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "form"
        message = str(item["msg"]).removeprefix("Value error, ")
        errors.setdefault(field, message[:1].upper() + message[1:])
    return errors


def grantable_roles(actor: Principal) -> list[Role]:
    return permissions.grantable_roles(actor.permissions)
