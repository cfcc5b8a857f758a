"""Templates, the layout's navigation, and the one way console responses are rendered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.templating import Jinja2Templates

from leadrelay.console.errors import ConsoleProblem, LoginRequired
from leadrelay.identity.permissions import Permission

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Pages may hold a freshly issued secret: never cached, never framed, no inline script.
SECURITY_HEADERS: dict[str, str] = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    href: str
    permission: Permission
    icon: str  # name of an inline SVG in templates/_icons.html


NAV: tuple[NavItem, ...] = (
    NavItem("Dashboard", "/console", Permission.TENANT_READ, "home"),
    NavItem("Leads", "/console/leads", Permission.LEADS_READ, "leads"),
    NavItem("Imports", "/console/imports", Permission.LEADS_READ, "upload"),
    NavItem("Duplicate review", "/console/dedup", Permission.LEADS_READ, "merge"),
    NavItem("ICP scoring", "/console/scoring", Permission.SCORING_READ, "filter"),
    NavItem("Routing", "/console/routing", Permission.ROUTING_READ, "split"),
    NavItem("Approvals", "/console/approvals", Permission.DRAFTS_READ, "check"),
    NavItem("Templates", "/console/templates", Permission.DRAFTS_READ, "message"),
    NavItem("Outreach", "/console/outreach", Permission.OUTREACH_READ, "send"),
    NavItem("Campaigns", "/console/campaigns", Permission.OUTREACH_READ, "megaphone"),
    NavItem("Funnel", "/console/funnel", Permission.OUTREACH_READ, "filter"),
    NavItem("Suppressions", "/console/suppressions", Permission.OUTREACH_READ, "ban"),
    NavItem("Consents", "/console/consents", Permission.OUTREACH_READ, "check"),
    NavItem("Users", "/console/users", Permission.USERS_READ, "users"),
    NavItem("API keys", "/console/api-keys", Permission.API_KEYS_MANAGE, "key"),
    NavItem("Audit trail", "/console/audit", Permission.AUDIT_READ, "shield"),
    NavItem("Data requests", "/console/dsar", Permission.DSAR_MANAGE, "file"),
    NavItem("Retention", "/console/retention", Permission.AUDIT_READ, "lock"),
    NavItem("Compliance posture", "/console/posture", Permission.COMPLIANCE_READ, "check"),
    NavItem("Dead letters", "/console/dead-letters", Permission.DEAD_LETTERS_READ, "inbox"),
)


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # "success" | "error" | "info" | "warning"
    text: str
    href: str = ""  # an optional link after the text, to where the change can be seen
    link: str = ""


def format_datetime(value: datetime | None) -> Markup:
    """A compact UTC time; the exact instant is in the tooltip and the `datetime` attribute."""
    if value is None:
        return Markup("—")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        value.isoformat(),
        value.strftime("%Y-%m-%d %H:%M:%S UTC"),
        value.strftime("%d %b %Y, %H:%M"),
    )


def short_id(value: object) -> str:
    text = "" if value is None else str(value)
    return text[:8] if len(text) > 8 else text


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["datetime"] = format_datetime
    environment.filters["short_id"] = short_id
    return environment


def _layout_context(request: Request) -> dict[str, Any]:
    # Set by `auth.get_console` once the session is known; absent on the login page.
    return {"console": getattr(request.state, "console", None), "path": request.url.path}


templates = Jinja2Templates(env=_environment(), context_processors=[_layout_context])


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    context = dict(context or {})
    context.setdefault("notices", [])
    return templates.TemplateResponse(
        request,
        name,
        context,
        status_code=status,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def render_problem(request: Request, problem: ConsoleProblem) -> Response:
    """A refused request: the notice area for htmx, a whole page otherwise."""
    if is_htmx(request):
        notice = Notice("error", problem.detail)
        return render(
            request,
            "_notices.html",
            {"notices": [notice]},
            status=problem.status,
            headers={"hx-retarget": "#notices", "hx-reswap": "innerHTML"},
        )
    return render(request, "error.html", {"problem": problem}, status=problem.status)


def redirect_to_login(request: Request, error: LoginRequired) -> Response:
    if is_htmx(request):
        # htmx follows this header with a full page load instead of swapping a fragment.
        return Response(status_code=401, headers={"hx-redirect": error.login_url})
    return RedirectResponse(error.login_url, status_code=303)
