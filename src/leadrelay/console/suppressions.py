"""Suppressions and do-not-call lists in the console: who may not be contacted, checking an
address, recording an opt-out, lifting one when the person opts back in, and importing a
registry file with its row report.

Addresses are kept only as keyed hashes (`outreach.suppression`): the list cannot show them,
and finding one means typing it in to be hashed the same way. The check is a POST (it writes
nothing, reading the lists is enough) so the address stays out of URLs, logs and history.
"""

from __future__ import annotations

import codecs
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import anyio
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import and_, func, or_, select

from leadrelay.console.auth import (
    CheckSuppressions,
    Console,
    ManageSuppressions,
    ViewOutreach,
)
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import ValidationFailed
from leadrelay.identity.permissions import Permission
from leadrelay.identity.service import get_tenant
from leadrelay.outreach import suppression
from leadrelay.outreach.api import keys_of
from leadrelay.outreach.models import DncEntry, Suppression, SuppressionReason

router = APIRouter(prefix="/console/suppressions")

PAGE_SIZE = 100
DNC_UPLOAD_PATH = "/console/suppressions/dnc"
MAX_DNC_BYTES = 50 * 1024 * 1024
# What the body-size middleware lets through to the upload route: the file and its envelope.
DNC_UPLOAD_BODY_LIMIT = MAX_DNC_BYTES + 256 * 1024
COPY_CHUNK_BYTES = 1024 * 1024
REJECTED_SHOWN = 50
MAX_ADDRESS = 320
MAX_NOTE = 1000
MAX_LIST_NAME = 100
KINDS = {"email": "E-mail", "phone": "Phone"}
REASON_LABELS = {
    SuppressionReason.OPTED_OUT.value: "opted out",
    SuppressionReason.HARD_BOUNCE.value: "hard bounce",
    SuppressionReason.COMPLAINT.value: "complaint",
    SuppressionReason.MANUAL.value: "manual",
}
REASON_TONES = {
    SuppressionReason.OPTED_OUT.value: "info",
    SuppressionReason.HARD_BOUNCE.value: "warn",
    SuppressionReason.COMPLAINT.value: "bad",
    SuppressionReason.MANUAL.value: "muted",
}
# What a person recording one by hand may pick (a hard bounce comes from the channel).
ADDABLE_REASONS = (
    SuppressionReason.OPTED_OUT.value,
    SuppressionReason.COMPLAINT.value,
    SuppressionReason.MANUAL.value,
)
_REGION = re.compile(r"[A-Za-z]{2}")


@dataclass(slots=True)
class AddressForm:
    """The check or add-an-opt-out form as typed, and its field errors."""

    kind: str = "email"
    address: str = ""
    region: str = ""
    reason: str = SuppressionReason.OPTED_OUT.value
    note: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckResult:
    kind: str
    normalized: str
    reasons: list[str]  # "opted out", … for the address's own kind
    dnc_lists: list[str]
    row: Suppression | None

    @property
    def suppressed(self) -> bool:
        return bool(self.reasons)

    @property
    def blocked(self) -> bool:
        return self.suppressed or bool(self.dnc_lists)


@dataclass(slots=True)
class DncForm:
    list_name: str = ""
    region: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DncReport:
    list_name: str
    filename: str
    rows: int
    added: int
    already_listed: int
    rejected: list[dict[str, object]]

    @property
    def rejected_shown(self) -> list[dict[str, object]]:
        return self.rejected[:REJECTED_SHOWN]


# --- reading ---------------------------------------------------------------------------------


async def _rows(
    console: Console, after: uuid.UUID | None
) -> tuple[list[Suppression], uuid.UUID | None]:
    """Newest first, a page at a time: `after` is the last row of the previous page."""
    session = console.session
    query = select(Suppression)
    if after is not None:
        anchor = await session.get(Suppression, after)
        if anchor is not None:
            query = query.where(
                or_(
                    Suppression.created_at < anchor.created_at,
                    and_(Suppression.created_at == anchor.created_at, Suppression.id < anchor.id),
                )
            )
    found = list(
        await session.scalars(
            query.order_by(Suppression.created_at.desc(), Suppression.id.desc()).limit(
                PAGE_SIZE + 1
            )
        )
    )
    rows = found[:PAGE_SIZE]
    return rows, rows[-1].id if len(found) > PAGE_SIZE else None


async def _dnc_lists(console: Console) -> list[tuple[str, int]]:
    rows = await console.session.execute(
        select(DncEntry.list_name, func.count())
        .group_by(DncEntry.list_name)
        .order_by(DncEntry.list_name)
    )
    return [(str(name), int(count)) for name, count in rows]


async def _counts(console: Console) -> dict[str, int]:
    rows = await console.session.execute(
        select(Suppression.address_kind, func.count()).group_by(Suppression.address_kind)
    )
    return {str(kind): int(count) for kind, count in rows}


async def _tenant_region(console: Console) -> str | None:
    tenant = await get_tenant(console.session, console.principal.tenant_id)
    region = (tenant.settings or {}).get("default_country")
    return str(region).upper() if region else None


def _labels() -> dict[str, Any]:
    return {"kinds": KINDS, "reason_labels": REASON_LABELS, "reason_tones": REASON_TONES}


async def _panel(
    request: Request,
    console: Console,
    *,
    check_form: AddressForm | None = None,
    check: CheckResult | None = None,
    add_form: AddressForm | None = None,
    dnc_form: DncForm | None = None,
    report: DncReport | None = None,
    notices: list[Notice] | None = None,
    after: uuid.UUID | None = None,
    status: int = 200,
) -> Response:
    rows, next_after = await _rows(console, after)
    context: dict[str, Any] = {
        "rows": rows,
        "next_after": next_after,
        "counts": await _counts(console),
        "dnc_lists": await _dnc_lists(console),
        "check_form": check_form or AddressForm(),
        "check": check,
        "add_form": add_form or AddressForm(),
        "dnc_form": dnc_form or DncForm(),
        "report": report,
        "addable_reasons": ADDABLE_REASONS,
        "tenant_region": await _tenant_region(console),
        "can_manage": console.can(Permission.SUPPRESSIONS_MANAGE),
        "max_dnc_bytes": MAX_DNC_BYTES,
        "rejected_shown": REJECTED_SHOWN,
        "panel_notices": notices or [],
        **_labels(),
    }
    template = "suppressions/_panel.html" if is_htmx(request) else "suppressions/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def suppressions_page(
    request: Request, console: ViewOutreach, after: Annotated[uuid.UUID | None, Query()] = None
) -> Response:
    if is_htmx(request) and request.headers.get("hx-target") == "suppressions-more":
        rows, next_after = await _rows(console, after)
        context = {
            "rows": rows,
            "next_after": next_after,
            "can_manage": console.can(Permission.SUPPRESSIONS_MANAGE),
            **_labels(),
        }
        return render(request, "suppressions/_rows.html", context)
    return await _panel(request, console, after=after)


# --- checking and adding an address ------------------------------------------------------------


def _address_form(
    kind: str, address: str, region: str, *, reason: str = "", note: str = ""
) -> AddressForm:
    form = AddressForm(kind=kind, address=address.strip(), region=region.strip().upper())
    form.reason = reason or form.reason
    form.note = note
    if kind not in KINDS:
        form.errors["kind"] = "Choose e-mail or phone."
    if len(form.address) < 3:
        form.errors["address"] = "Type the e-mail address or phone number."
    if form.region and not _REGION.fullmatch(form.region):
        form.errors["region"] = "Two letters, such as US or DE."
    return form


async def _normalized(console: Console, form: AddressForm) -> str | None:
    """The address as it is hashed, or None with the reason at the address field."""
    region = form.region or await _tenant_region(console)
    try:
        return suppression.normalized_address(
            cast(Literal["email", "phone"], form.kind), form.address, default_region=region
        )
    except ValidationFailed as error:
        reason = next((str(e.get("reason")) for e in error.errors if e.get("reason")), "")
        words = reason.replace("_", " ")
        if reason == "missing_region":
            words = "no country code: start with + or give the region"
        form.errors["address"] = f"{error.detail} ({words})" if words else error.detail
        return None


async def _existing(console: Console, keys: str, kind: str, normalized: str) -> Suppression | None:
    digest = suppression.address_hash(keys, cast(Literal["email", "phone"], kind), normalized)
    return await console.session.scalar(
        select(Suppression).where(
            Suppression.address_kind == kind, Suppression.address_hash == digest
        )
    )


@router.post("/check")
async def check_address(
    request: Request,
    console: CheckSuppressions,
    kind: Annotated[str, Form(max_length=10)] = "email",
    address: Annotated[str, Form(max_length=MAX_ADDRESS)] = "",
    region: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    form = _address_form(kind, address, region)
    normalized = None if form.errors else await _normalized(console, form)
    if normalized is None:
        return await _panel(request, console, check_form=form, status=422)
    keys = keys_of(request)
    email, phone = (normalized, None) if form.kind == "email" else (None, normalized)
    reasons = await suppression.suppression_reasons(console.session, keys, email=email, phone=phone)
    row = await _existing(console, keys, form.kind, normalized)
    result = CheckResult(
        kind=form.kind,
        normalized=normalized,
        reasons=[
            REASON_LABELS.get(reason.split("_", 1)[1], reason)
            for reason in reasons
            if "_" in reason
        ],
        dnc_lists=await suppression.dnc_lists(console.session, keys, phone),
        row=row,
    )
    return await _panel(request, console, check_form=form, check=result)


@router.post("")
async def add_suppression(
    request: Request,
    console: ManageSuppressions,
    kind: Annotated[str, Form(max_length=10)] = "email",
    address: Annotated[str, Form(max_length=MAX_ADDRESS)] = "",
    region: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=20)] = SuppressionReason.OPTED_OUT.value,
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
) -> Response:
    """Record an opt-out (or a complaint, a manual block): it holds before the next send and
    until the person opts back in. An address already suppressed keeps its first reason."""
    form = _address_form(kind, address, region, reason=reason, note=note.strip())
    if reason not in ADDABLE_REASONS:
        form.errors["reason"] = "Choose opted out, complaint or manual."
    normalized = None if form.errors else await _normalized(console, form)
    if normalized is None:
        notice = Notice("error", "Not added: check the marked fields.")
        return await _panel(request, console, add_form=form, notices=[notice], status=422)
    keys = keys_of(request)
    existing = await _existing(console, keys, form.kind, normalized)
    if existing is not None:
        label = REASON_LABELS.get(existing.reason, existing.reason)
        since = existing.created_at.strftime("%d %b %Y")
        notice = Notice("info", f"Already suppressed since {since} ({label}): nothing changed.")
        return await _panel(request, console, notices=[notice])
    await suppression.suppress(
        console.session,
        console.principal,
        keys=keys,
        kind=cast(Literal["email", "phone"], form.kind),
        normalized=normalized,
        reason=SuppressionReason(form.reason),
        source="console",
        note=form.note or None,
        now=utcnow(),
    )
    what = "e-mail address" if form.kind == "email" else "number"
    notice = Notice(
        "success",
        f"Suppressed ({REASON_LABELS[form.reason]}): no message goes to this {what} until the "
        "person opts back in. Only its keyed hash is kept.",
    )
    return await _panel(request, console, notices=[notice])


@router.post("/{suppression_id}/lift")
async def lift_suppression(
    request: Request, console: ManageSuppressions, suppression_id: uuid.UUID
) -> Response:
    """The person opted back in (START, a signed form): the suppression goes, audited."""
    await suppression.lift(console.session, console.principal, suppression_id, now=utcnow())
    notice = Notice(
        "success",
        "Lifted: the person opted back in, and may be contacted again. The audit trail "
        "keeps who lifted it and when.",
    )
    return await _panel(request, console, notices=[notice])


# --- do-not-call registry files ------------------------------------------------------------------


class UploadTooLarge(Exception):
    """The file is over the console's upload limit."""


async def _save_upload(file: UploadFile, path: Path) -> int:
    """Copy the upload to `path` a chunk at a time; its size in bytes."""
    size = 0
    async with await anyio.open_file(path, "wb") as out:
        while chunk := await file.read(COPY_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_DNC_BYTES:
                raise UploadTooLarge
            await out.write(chunk)
    return size


@router.post("/dnc")
async def import_dnc(
    request: Request,
    console: ManageSuppressions,
    file: Annotated[UploadFile | None, File()] = None,
    list_name: Annotated[str, Form(max_length=MAX_LIST_NAME * 2)] = "",
    region: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A registry file (one number per line, or a CSV with a `phone` column), read in this
    request; every rejected line is reported with its number and reason."""
    form = DncForm(list_name=list_name.strip(), region=region.strip().upper())
    if not form.list_name:
        form.errors["list_name"] = "Name the list, such as US National DNC."
    elif len(form.list_name) > MAX_LIST_NAME:
        form.errors["list_name"] = f"At most {MAX_LIST_NAME} characters."
    if form.region and not _REGION.fullmatch(form.region):
        form.errors["region"] = "Two letters, such as US or DE."
    if file is None or not file.filename:
        form.errors["file"] = "Choose the registry file."
    if form.errors or file is None:
        notice = Notice("error", "Not imported: check the marked fields.")
        if file is not None:
            await file.close()
        return await _panel(request, console, dnc_form=form, notices=[notice], status=422)
    folder = Path(tempfile.mkdtemp(prefix="dnc-"))
    try:
        path = folder / "registry.csv"
        try:
            size = await _save_upload(file, path)
        except UploadTooLarge:
            limit = MAX_DNC_BYTES // (1024 * 1024)
            form.errors["file"] = (
                f"The file is larger than {limit} MB: use the API (POST /v1/dnc/import)."
            )
            return await _panel(request, console, dnc_form=form, status=413)
        if size == 0:
            form.errors["file"] = "The file is empty."
            return await _panel(request, console, dnc_form=form, status=422)
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        with path.open("rb") as raw:
            lines = (decoder.decode(line) for line in raw)
            result = await suppression.import_dnc(
                console.session,
                console.principal,
                keys=keys_of(request),
                list_name=form.list_name,
                lines=lines,
                default_region=form.region or await _tenant_region(console),
                now=utcnow(),
            )
    finally:
        await file.close()
        shutil.rmtree(folder, ignore_errors=True)
    report = DncReport(
        list_name=result.list_name,
        filename=Path(file.filename or "").name[:200],
        rows=result.rows,
        added=result.added,
        already_listed=result.already_listed,
        rejected=result.rejected,
    )
    tone = "success" if not report.rejected else "warning"
    text = (
        f"Imported into {report.list_name}: {report.added} added, "
        f"{report.already_listed} already listed, {len(report.rejected)} rejected."
    )
    return await _panel(
        request,
        console,
        dnc_form=DncForm(list_name=form.list_name, region=form.region),
        report=report,
        notices=[Notice(tone, text)],
    )
