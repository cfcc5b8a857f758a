"""Domain errors and their one rendering: RFC 9457 problem+json.

Each error class declares its HTTP status and a stable `code`; its docstring is the default
message. Services raise them; the API handler (`leadrelay.app`) and the console render them.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://leadrelay.dev/problems/"


class LeadRelayError(Exception):
    """Something went wrong."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None
    ) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        self.errors = errors or []
        super().__init__(self.detail)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(
            status=self.status,
            code=self.code,
            title=self.title,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
        )


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return body


class NotFound(LeadRelayError):
    """The resource does not exist."""

    status = 404
    code = "not-found"
    title = "Not found"


class Unauthenticated(LeadRelayError):
    """Missing or invalid credentials."""

    status = 401
    code = "unauthenticated"
    title = "Unauthenticated"


class Forbidden(LeadRelayError):
    """Your role does not allow this action."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class Conflict(LeadRelayError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"
    title = "Conflict"


class ValidationFailed(LeadRelayError):
    """The request is invalid."""

    status = 422
    code = "validation-failed"
    title = "Validation failed"


class TooManyRequests(LeadRelayError):
    """Too many attempts; try again later."""

    status = 429
    code = "too-many-requests"
    title = "Too many requests"
