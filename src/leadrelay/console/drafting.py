"""Drafting in the console: "Draft a message" on a lead's page (channel, tone, length, call to
action, template, submit for review, and LLM instructions when an LLM is configured), which lands
on the draft's review page; and the templates page: the tenant's templates (checked by the
sandbox when saved, each refusal shown at its field), the built-in ones with a preview, and the
sender identity every message carries.

The rules are the API's (`drafting.api`): the same input models, `service.template_problems`,
unique template names, and `service.generate` with the app's one LLM client.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from leadrelay.approvals import service as approvals
from leadrelay.approvals.models import MessageTemplateRow
from leadrelay.capture import service as capture
from leadrelay.capture.models import Lead
from leadrelay.compliance.audit import append_events
from leadrelay.console.auth import (
    Console,
    ManageTemplates,
    ViewTemplates,
    WriteDrafts,
    settings_of,
)
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.forms import field_errors
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import LeadRelayError
from leadrelay.drafting import service
from leadrelay.drafting.api import DraftIn, SenderIn, TemplateIn, drafter_of
from leadrelay.drafting.evidence import Channel, Length, Tone
from leadrelay.drafting.templates import CTA_TEXTS, MessageTemplate
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import get_tenant

router = APIRouter()

TEMPLATES_URL = "/console/templates"
SENDER_URL = TEMPLATES_URL + "#sender"
MAX_NAME = 100
MAX_SUBJECT = 500
MAX_BODY = 20_000
MAX_INSTRUCTIONS = 2000
MAX_SENDER = 500
REQUIRED_SENDER = ("name", "company", "postal_address")
SENDER_LABELS = {
    "name": "Name",
    "company": "Company",
    "postal_address": "Postal address",
    "email": "E-mail",
    "phone": "Phone",
}
CHANNEL_LABELS = {
    Channel.EMAIL: "E-mail",
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.VOICE: "Voice script",
}
CTA_LABELS = {"book_call": "Book a call", "reply": "Ask for a reply", "send_info": "Offer info"}
BLOCKER_WORDS = {"opted_out": "opted out", "do_not_contact": "do not contact", "erased": "erased"}


def _checked(value: str) -> bool:
    return value.strip().lower() in {"on", "true", "1", "yes"}


def _plain(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sender_words(fields: list[str]) -> str:
    return ", ".join(SENDER_LABELS.get(name, name).lower() for name in fields)


# --- the draft form on a lead ------------------------------------------------------------------


@dataclass(slots=True)
class DraftForm:
    """The "Draft a message" form as typed (kept for re-display) and its field errors."""

    channel: str = Channel.EMAIL.value
    tone: str = Tone.FRIENDLY.value
    length: str = Length.MEDIUM.value
    cta: str = "book_call"
    template: str = ""
    submit: bool = True
    use_llm: bool = True
    instructions: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TemplateChoice:
    value: str  # "" (tenant default), a tenant template's id or "builtin:<name>"
    label: str
    channel: str
    builtin: bool


def _default_channel(lead: Lead) -> str:
    if not lead.email and lead.phone_e164:
        return Channel.SMS.value
    return Channel.EMAIL.value


async def _template_choices(console: Console) -> list[TemplateChoice]:
    """The tenant's active templates by name, then the built-in ones (channel, tone)."""
    rows = await console.session.scalars(
        select(MessageTemplateRow)
        .where(MessageTemplateRow.active)
        .order_by(MessageTemplateRow.name, MessageTemplateRow.id)
    )
    own = [
        TemplateChoice(
            str(row.id),
            row.name + (f" ({row.tone})" if row.tone else ""),
            row.channel,
            builtin=False,
        )
        for row in rows
    ]
    builtins = [
        TemplateChoice(item.ref, f"Built-in: {item.tone or 'any tone'}", item.channel, builtin=True)
        for item in _builtins()
    ]
    return own + builtins


async def _sender_missing(console: Console) -> list[str]:
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    values = service.sender_settings(tenant)
    return [name for name in REQUIRED_SENDER if not values.get(name)]


async def draft_form_context(
    request: Request,
    console: Console,
    lead: Lead,
    *,
    form: DraftForm | None = None,
    notices: list[Notice] | None = None,
) -> dict[str, Any]:
    """What `drafting/_draft_form.html` reads (the lead page passes it as `draft_form`)."""
    blockers = await capture.contact_blockers(console.session, lead.id)
    return {
        "lead": lead,
        "form": form or DraftForm(channel=_default_channel(lead)),
        "channels": [(channel.value, CHANNEL_LABELS[channel]) for channel in Channel],
        "tones": [tone.value for tone in Tone],
        "lengths": [length.value for length in Length],
        "ctas": [
            (key, CTA_LABELS.get(key, key.replace("_", " ")), texts[Tone.FRIENDLY])
            for key, texts in CTA_TEXTS.items()
        ],
        "templates": await _template_choices(console),
        "llm": drafter_of(request) is not None,
        "sender_missing": [SENDER_LABELS[name] for name in await _sender_missing(console)],
        "can_manage_templates": console.can(Permission.TEMPLATES_MANAGE),
        "blockers": [BLOCKER_WORDS.get(b, b.replace("_", " ")) for b in blockers],
        "notices": notices or [],
    }


def _generate_notice(error: LeadRelayError, can_manage: bool) -> Notice:
    """The service's refusal in words, with a way out where there is one."""
    if isinstance(error, service.SenderMissing):
        missing = [str(e.get("field", "")).removeprefix("sender.") for e in error.errors]
        who = "" if can_manage else " (an admin or manager sets it)"
        return Notice(
            "error",
            "Not drafted: set the sender identity first; every message carries the sender's "
            f"name, company and postal address. Missing: {_sender_words(missing)}{who}.",
            href=SENDER_URL,
            link="Sender identity",
        )
    if isinstance(error, service.NotContactable):
        blockers = [str(e.get("reason", "")) for e in error.errors] or [error.detail]
        words = ", ".join(BLOCKER_WORDS.get(b, b.replace("_", " ")) for b in blockers)
        return Notice("error", f"Not drafted: this lead may not be contacted ({words}).")
    if isinstance(error, service.TemplateNotFound):
        return Notice(
            "error",
            "Not drafted: that template no longer exists. Pick another one.",
            href=TEMPLATES_URL,
            link="Templates",
        )
    reasons = "; ".join(str(e.get("reason", "")) for e in error.errors if e.get("reason"))
    detail = error.detail.rstrip(".")
    text = f"Not drafted: {detail}" + (f": {reasons}." if reasons else ".")
    if any(e.get("field") == "template" for e in error.errors):
        return Notice("error", text, href=TEMPLATES_URL, link="Templates")
    return Notice("error", text)


async def _draft_form_response(
    request: Request,
    console: Console,
    lead: Lead,
    form: DraftForm,
    notices: list[Notice],
    status: int,
) -> Response:
    context = {
        "draft_form": await draft_form_context(request, console, lead, form=form, notices=notices)
    }
    template = "drafting/_draft_form.html" if is_htmx(request) else "drafting/draft_page.html"
    return render(request, template, context, status=status)


@router.post("/console/leads/{lead_id}/drafts")
async def draft_message(
    request: Request,
    console: WriteDrafts,
    lead_id: uuid.UUID,
    channel: Annotated[str, Form(max_length=20)] = "",
    tone: Annotated[str, Form(max_length=20)] = "",
    length: Annotated[str, Form(max_length=20)] = "",
    cta: Annotated[str, Form(max_length=40)] = "",
    template: Annotated[str, Form(max_length=200)] = "",
    submit: Annotated[str, Form(max_length=10)] = "",
    use_llm: Annotated[str, Form(max_length=10)] = "",
    instructions: Annotated[str, Form(max_length=MAX_INSTRUCTIONS * 2)] = "",
) -> Response:
    """Draft a message for the lead and open its review page; a refusal is a notice."""
    record = await capture.access_lead(console.session, console.principal, lead_id)
    drafter = drafter_of(request)
    form = DraftForm(
        channel=channel.strip(),
        tone=tone.strip(),
        length=length.strip(),
        cta=cta.strip(),
        template=template.strip(),
        submit=_checked(submit),
        use_llm=_checked(use_llm) if drafter is not None else True,
        instructions=_plain(instructions).strip(),
    )
    try:
        body = DraftIn.model_validate(
            {
                "lead_id": lead_id,
                "channel": form.channel,
                "tone": form.tone or Tone.FRIENDLY.value,
                "length": form.length or Length.MEDIUM.value,
                "cta": form.cta or "book_call",
                "template": form.template or None,
                "use_llm": form.use_llm,
                "instructions": (form.instructions or None) if drafter is not None else None,
                "submit": form.submit,
            }
        )
    except ValidationError as error:
        form.errors = field_errors(error)
        notice = Notice("error", "Not drafted: check the marked fields.")
        return await _draft_form_response(request, console, record.lead, form, [notice], 422)
    if body.cta not in CTA_TEXTS:
        form.errors["cta"] = "Pick one of the calls to action."
        notice = Notice("error", "Not drafted: check the marked fields.")
        return await _draft_form_response(request, console, record.lead, form, [notice], 422)
    policy = await approvals.tenant_policy(
        console.session,
        console.principal.tenant_id,
        default_expiry_days=settings_of(request).approval_expiry_days,
    )
    try:
        async with console.session.begin_nested():
            draft = await service.generate(
                console.session,
                console.principal,
                service.DraftRequest(**body.model_dump()),
                drafter=drafter,
                policy=policy,
                now=utcnow(),
            )
    except LeadRelayError as error:
        notice = _generate_notice(error, console.can(Permission.TEMPLATES_MANAGE))
        if any(e.get("field") == "template" for e in error.errors) or isinstance(
            error, service.TemplateNotFound
        ):
            form.errors["template"] = "This template cannot be used for this draft."
        return await _draft_form_response(
            request, console, record.lead, form, [notice], error.status
        )
    except ValueError as error:  # the composer's own refusals, e.g. a reserved placeholder
        form.errors["template"] = "This template cannot be used for this draft."
        notice = Notice("error", f"Not drafted: the template cannot be used: {error}.")
        return await _draft_form_response(request, console, record.lead, form, [notice], 422)
    url = f"/console/approvals/{draft.id}"
    if is_htmx(request):
        # htmx follows this with a full page load of the review page.
        return Response(status_code=200, headers={"hx-redirect": url})
    return RedirectResponse(url, status_code=303)


# --- templates ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TemplateForm:
    """A tenant template's form as typed, and every refusal reason by field."""

    name: str = ""
    channel: str = Channel.EMAIL.value
    tone: str = ""
    subject: str = ""
    body: str = ""
    active: bool = True
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: str, reason: str) -> None:
        where = where if where in {"name", "channel", "tone", "subject", "body"} else "form"
        prefix = f"{where}: "
        text = reason.removeprefix(prefix)
        text = text[:1].upper() + text[1:]
        # Two layers may say the same thing in other words ("email" / "e-mail").
        key = text.lower().replace("e-mail", "email")
        if key not in {r.lower().replace("e-mail", "email") for r in self.errors.get(where, [])}:
            self.errors.setdefault(where, []).append(text)

    @property
    def problems(self) -> int:
        return sum(len(reasons) for reasons in self.errors.values())

    @classmethod
    def of(cls, row: MessageTemplateRow) -> TemplateForm:
        return cls(row.name, row.channel, row.tone or "", row.subject or "", row.body, row.active)

    @classmethod
    def from_builtin(cls, template: MessageTemplate) -> TemplateForm:
        return cls(
            name="",
            channel=template.channel.value,
            tone=template.tone.value if template.tone else "",
            subject=template.subject or "",
            body=template.body,
        )


async def _read_template(
    console: Console, form: TemplateForm, template_id: uuid.UUID | None
) -> TemplateIn | None:
    """The form as the API's input, checked as the API checks it: the input model, the sandbox
    (`service.template_problems`) and a name no other template uses. None when refused."""
    subject = " ".join(form.subject.split()) if form.channel == Channel.EMAIL else form.subject
    try:
        body = TemplateIn.model_validate(
            {
                "name": form.name,
                "channel": form.channel,
                "tone": form.tone or None,
                "subject": subject or None,
                "body": form.body,
                "active": form.active,
            }
        )
    except ValidationError as error:
        for where, message in field_errors(error).items():
            form.add(where, message)
        return None
    candidate = MessageTemplate(
        id=str(template_id) if template_id else body.name,
        channel=body.channel,
        subject=body.subject,
        body=body.body,
        tone=body.tone,
    )
    for problem in service.template_problems(candidate):
        form.add(problem["field"], problem["reason"])
    taken = await console.session.scalar(
        select(MessageTemplateRow.id).where(MessageTemplateRow.name == body.name)
    )
    if taken is not None and taken != template_id:
        form.add("name", f"A template named “{body.name}” exists: pick another name.")
    return None if form.errors else body


async def _audit_template(
    console: Console, action: str, row: MessageTemplateRow, **data: Any
) -> None:
    actor = console.principal
    await append_events(
        console.session,
        actor.tenant_id,
        [actor.audit(action, target_type="template", target_id=row.id, name=row.name, **data)],
        now=utcnow(),
    )


def _template_form(
    name: str, channel: str, tone: str, subject: str, body: str, active: str
) -> TemplateForm:
    return TemplateForm(
        name=name.strip(),
        channel=channel.strip(),
        tone=tone.strip(),
        subject=_plain(subject).strip(),
        body=_plain(body),
        active=_checked(active),
    )


@dataclass(frozen=True, slots=True)
class Builtin:
    ref: str  # "builtin:<name>", as a draft request names it
    name: str
    channel: str
    tone: str
    subject: str | None
    body: str


def _builtins() -> list[Builtin]:
    order = list(Channel)
    return [
        Builtin(
            service.BUILTIN + t.id,
            t.id,
            t.channel.value,
            t.tone.value if t.tone else "",
            t.subject,
            t.body,
        )
        for t in sorted(
            service.BUILTIN_TEMPLATES.values(),
            key=lambda t: (order.index(t.channel), t.tone.value if t.tone else ""),
        )
    ]


def _builtin(name: str) -> Builtin | None:
    name = name.removeprefix(service.BUILTIN)
    return next((item for item in _builtins() if item.name == name), None)


def _sender_view(values: Mapping[str, str | None]) -> dict[str, Any]:
    missing = [name for name in REQUIRED_SENDER if not values.get(name)]
    return {
        "values": {name: values.get(name) or "" for name in SENDER_LABELS},
        "labels": SENDER_LABELS,
        "missing": [SENDER_LABELS[name] for name in missing],
        "complete": not missing,
    }


async def _sender_context(
    console: Console,
    *,
    typed: Mapping[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notices: list[Notice] | None = None,
) -> dict[str, Any]:
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    view = _sender_view(service.sender_settings(tenant))
    if typed is not None:
        view["values"] = dict(typed)
    return {
        "sender": view,
        "sender_errors": errors or {},
        "sender_notices": notices or [],
        "can_manage": console.can(Permission.TEMPLATES_MANAGE),
    }


async def _templates_context(
    console: Console,
    *,
    form: TemplateForm | None = None,
    notices: list[Notice] | None = None,
    preview: str = "",
) -> dict[str, Any]:
    rows = list(
        await console.session.scalars(
            select(MessageTemplateRow).order_by(MessageTemplateRow.name, MessageTemplateRow.id)
        )
    )
    builtins = _builtins()
    shown = _builtin(preview) or builtins[0]
    return {
        "rows": rows,
        "builtins": builtins,
        "preview": shown,
        "form": form or TemplateForm(),
        "channels": [(channel.value, CHANNEL_LABELS[channel]) for channel in Channel],
        "channel_labels": {channel.value: CHANNEL_LABELS[channel] for channel in Channel},
        "tones": [tone.value for tone in Tone],
        "can_manage": console.can(Permission.TEMPLATES_MANAGE),
        "templates_notices": notices or [],
    }


async def _templates_page(
    request: Request,
    console: Console,
    *,
    form: TemplateForm | None = None,
    notices: list[Notice] | None = None,
    preview: str = "",
    status: int = 200,
) -> Response:
    context = await _templates_context(console, form=form, notices=notices, preview=preview)
    if is_htmx(request):
        return render(request, "drafting/_templates.html", context, status=status)
    context.update(await _sender_context(console))
    return render(request, "drafting/page.html", context, status=status)


@router.get(TEMPLATES_URL)
async def templates_page(
    request: Request, console: ViewTemplates, preview: str = "", start: str = ""
) -> Response:
    """The sender identity, the tenant's templates and the built-in ones. `start` fills the new
    template form with a built-in template's text."""
    builtin = _builtin(start[:200]) if start else None
    form = None
    if builtin is not None and console.can(Permission.TEMPLATES_MANAGE):
        source = service.BUILTIN_TEMPLATES[builtin.name]
        form = TemplateForm.from_builtin(source)
    context = await _templates_context(console, form=form, preview=preview[:200] or start[:200])
    context.update(await _sender_context(console))
    return render(request, "drafting/page.html", context)


@router.get(TEMPLATES_URL + "/builtin")
async def builtin_preview(request: Request, console: ViewTemplates, preview: str = "") -> Response:
    """One built-in template's text: a fragment for htmx, else the page showing it."""
    builtin = _builtin(preview[:200])
    if builtin is None:
        raise ConsoleProblem(404, "Not found", "There is no built-in template of that name.")
    if not is_htmx(request):
        return RedirectResponse(f"{TEMPLATES_URL}?preview={builtin.name}#builtins", 303)
    context = {"preview": builtin, "can_manage": console.can(Permission.TEMPLATES_MANAGE)}
    return render(request, "drafting/_preview.html", context)


@router.post(TEMPLATES_URL + "/sender")
async def save_sender(
    request: Request,
    console: ManageTemplates,
    name: Annotated[str, Form(max_length=MAX_SENDER)] = "",
    company: Annotated[str, Form(max_length=MAX_SENDER)] = "",
    postal_address: Annotated[str, Form(max_length=MAX_SENDER * 2)] = "",
    email: Annotated[str, Form(max_length=MAX_SENDER)] = "",
    phone: Annotated[str, Form(max_length=MAX_SENDER)] = "",
) -> Response:
    """The sender identity, saved with `service.set_sender` (blank clears a field)."""
    typed = {
        "name": name.strip(),
        "company": company.strip(),
        "postal_address": _plain(postal_address).strip(),
        "email": email.strip(),
        "phone": phone.strip(),
    }
    try:
        body = SenderIn.model_validate({key: value or None for key, value in typed.items()})
    except ValidationError as error:
        errors = field_errors(error)
        notice = Notice("error", "Not saved: check the marked fields.")
        context = await _sender_context(console, typed=typed, errors=errors, notices=[notice])
        return await _sender_response(request, console, context, status=422)
    await service.set_sender(console.session, console.principal, body.model_dump(), now=utcnow())
    context = await _sender_context(console)
    if context["sender"]["complete"]:
        notice = Notice("success", "Sender identity saved: messages can be drafted.")
    else:
        missing = ", ".join(context["sender"]["missing"]).lower()
        notice = Notice("warning", f"Saved, but incomplete: drafting needs the {missing} too.")
    context["sender_notices"] = [notice]
    return await _sender_response(request, console, context)


async def _sender_response(
    request: Request, console: Console, context: dict[str, Any], *, status: int = 200
) -> Response:
    if is_htmx(request):
        return render(request, "drafting/_sender.html", context, status=status)
    context.update(await _templates_context(console))
    return render(request, "drafting/page.html", context, status=status)


@router.post(TEMPLATES_URL)
async def create_template(
    request: Request,
    console: ManageTemplates,
    name: Annotated[str, Form(max_length=MAX_NAME * 2)] = "",
    channel: Annotated[str, Form(max_length=20)] = "",
    tone: Annotated[str, Form(max_length=20)] = "",
    subject: Annotated[str, Form(max_length=MAX_SUBJECT * 2)] = "",
    body: Annotated[str, Form(max_length=MAX_BODY * 2)] = "",
    active: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    form = _template_form(name, channel, tone, subject, body, active)
    checked = await _read_template(console, form, None)
    if checked is None:
        # The form says why, at each field.
        return await _templates_page(request, console, form=form, status=422)
    now = utcnow()
    row = MessageTemplateRow(
        tenant_id=console.principal.tenant_id,
        name=checked.name,
        channel=checked.channel.value,
        tone=checked.tone.value if checked.tone else None,
        subject=checked.subject,
        body=checked.body,
        active=checked.active,
        created_by=console.principal.name,
        created_at=now,
        updated_at=now,
    )
    console.session.add(row)
    await console.session.flush()
    await _audit_template(console, "template.created", row, channel=row.channel)
    if not is_htmx(request):
        return RedirectResponse(f"{TEMPLATES_URL}/{row.id}", status_code=303)
    notice = Notice(
        "success",
        f"Template “{row.name}” saved"
        + (": drafts for this channel use it by default." if row.active else " (inactive)."),
        href=f"{TEMPLATES_URL}/{row.id}",
        link="Open it",
    )
    return await _templates_page(request, console, notices=[notice])


async def _get_row(console: Console, template_id: uuid.UUID) -> MessageTemplateRow:
    row = await console.session.get(MessageTemplateRow, template_id)
    if row is None or row.tenant_id != console.principal.tenant_id:
        raise ConsoleProblem(404, "Not found", "This template does not exist.")
    return row


async def _template_panel(
    request: Request,
    console: Console,
    row: MessageTemplateRow,
    *,
    form: TemplateForm | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "row": row,
        "form": form or TemplateForm.of(row),
        "channels": [(channel.value, CHANNEL_LABELS[channel]) for channel in Channel],
        "channel_labels": {channel.value: CHANNEL_LABELS[channel] for channel in Channel},
        "tones": [tone.value for tone in Tone],
        "can_manage": console.can(Permission.TEMPLATES_MANAGE),
        "panel_notices": notices or [],
    }
    template = "drafting/_template.html" if is_htmx(request) else "drafting/template.html"
    return render(request, template, context, status=status)


@router.get(TEMPLATES_URL + "/{template_id}")
async def template_page(
    request: Request, console: ViewTemplates, template_id: uuid.UUID
) -> Response:
    return await _template_panel(request, console, await _get_row(console, template_id))


@router.post(TEMPLATES_URL + "/{template_id}")
async def update_template(
    request: Request,
    console: ManageTemplates,
    template_id: uuid.UUID,
    name: Annotated[str, Form(max_length=MAX_NAME * 2)] = "",
    channel: Annotated[str, Form(max_length=20)] = "",
    tone: Annotated[str, Form(max_length=20)] = "",
    subject: Annotated[str, Form(max_length=MAX_SUBJECT * 2)] = "",
    body: Annotated[str, Form(max_length=MAX_BODY * 2)] = "",
    active: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    row = await console.session.get(MessageTemplateRow, template_id, with_for_update=True)
    if row is None or row.tenant_id != console.principal.tenant_id:
        raise ConsoleProblem(404, "Not found", "This template does not exist.")
    form = _template_form(name, channel, tone, subject, body, active)
    checked = await _read_template(console, form, template_id)
    if checked is None:
        return await _template_panel(request, console, row, form=form, status=422)
    unchanged = (
        row.name == checked.name
        and row.channel == checked.channel.value
        and row.tone == (checked.tone.value if checked.tone else None)
        and row.subject == checked.subject
        and row.body == checked.body
        and row.active == checked.active
    )
    if unchanged:
        return await _template_panel(
            request, console, row, notices=[Notice("info", "Nothing changed.")]
        )
    row.name, row.channel = checked.name, checked.channel.value
    row.tone = checked.tone.value if checked.tone else None
    row.subject, row.body, row.active = checked.subject, checked.body, checked.active
    row.updated_at = utcnow()
    await _audit_template(console, "template.updated", row, active=row.active)
    notice = Notice(
        "success", f"Template “{row.name}” saved" + ("." if row.active else " (inactive).")
    )
    return await _template_panel(request, console, row, notices=[notice])
