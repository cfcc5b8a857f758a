"""How the console refuses a request: a friendly page, or a notice when htmx asked."""

from __future__ import annotations

from urllib.parse import quote

from leadrelay.core.errors import LeadRelayError


class ConsoleProblem(Exception):
    """A console request refused; rendered as a page (or an htmx notice), never as JSON."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        super().__init__(detail)

    @classmethod
    def from_error(cls, error: LeadRelayError) -> ConsoleProblem:
        return cls(error.status, error.title, error.detail)

    @classmethod
    def forbidden(cls, detail: str = "Your role does not allow this.") -> ConsoleProblem:
        return cls(403, "Not allowed", detail)


class LoginRequired(Exception):
    """No valid console session: the visitor goes to the login page and comes back after."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url
        super().__init__(next_url)

    @property
    def login_url(self) -> str:
        return "/console/login?next=" + quote(self.next_url, safe="/")
