"""CSV imports from the console: the upload, its progress, past imports and their error reports.

The upload streams to a file under the data directory and `csv_import.run_import` reads it in a
task of this server process, in its own transactions of a thousand rows: the request answers
as soon as the import's row exists, and the page polls that row. A queue job would outlive a
restart; this task does not: an import cut short is marked failed, and its file is gone, so it
is uploaded again. Byte progress (the bar) is known only to the process reading the file; any
other shows the row counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from leadrelay.capture import csv_import, sources
from leadrelay.capture.models import ImportIssue, ImportStatus, LeadImport, SourceStatus
from leadrelay.compliance.audit import neutralize_cell
from leadrelay.console.auth import Console, ViewLeads, WriteLeads, database, settings_of
from leadrelay.console.errors import ConsoleProblem
from leadrelay.console.rendering import SECURITY_HEADERS, Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.errors import LeadRelayError
from leadrelay.core.logging import get_logger
from leadrelay.identity.permissions import Permission

router = APIRouter(prefix="/console/imports")
log = get_logger("leadrelay.console.imports")

UPLOAD_PATH = "/console/imports"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# What the body-size middleware lets through to the upload route: the file and its envelope.
UPLOAD_BODY_LIMIT = MAX_UPLOAD_BYTES + 256 * 1024
COPY_CHUNK_BYTES = 1024 * 1024
START_TIMEOUT_SECONDS = 15
RECENT_IMPORTS = 50
ISSUES_SHOWN = 8
DRY_RUN_ISSUES_KEPT = 1000
DRY_RUNS_KEPT_FOR = timedelta(hours=1)
REPORT_COLUMNS = ("line", "status", "field", "reason")
INTERRUPTED = "interrupted: the server stopped before the import finished; upload the file again"


@dataclass(slots=True)
class FileProgress:
    """Bytes of an upload read so far (reported by the reader every 256 KiB)."""

    total: int
    done: int = 0

    def advance(self, count: int) -> None:
        self.done = min(self.total, self.done + count)

    @property
    def percent(self) -> int:
        return 100 if self.total <= 0 else min(100, self.done * 100 // self.total)


@dataclass(frozen=True, slots=True)
class ReportLine:
    line: int
    status: str
    errors: list[dict[str, str]]


class _IssueCollector(io.StringIO):
    """A dry run's per-row report, of which only the first problems are kept."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.issues: list[ReportLine] = []

    @override
    def write(self, s: str, /) -> int:
        if len(self.issues) < self.limit:
            row = json.loads(s)
            if row["status"] != "accepted":
                self.issues.append(ReportLine(int(row["line"]), row["status"], row["errors"]))
        return len(s)


@dataclass(slots=True)
class DryRun:
    """A dry run has no row in the database: this process keeps its outcome for a while."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    filename: str
    source_name: str
    started_at: datetime
    progress: FileProgress
    report: _IssueCollector = field(default_factory=lambda: _IssueCollector(DRY_RUN_ISSUES_KEPT))
    summary: csv_import.ImportSummary | None = None
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def status(self) -> ImportStatus:
        if self.error is not None:
            return ImportStatus.FAILED
        return ImportStatus.RUNNING if self.summary is None else ImportStatus.DONE


class UploadTasks:
    """The imports this process is running. asyncio keeps only weak references to tasks, so
    they are held here until they end, with each one's byte progress and the dry runs."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.progress: dict[uuid.UUID, FileProgress] = {}
        self.dry_runs: dict[uuid.UUID, DryRun] = {}

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget_old_dry_runs(self, now: datetime) -> None:
        for key, run in list(self.dry_runs.items()):
            if run.finished_at is not None and now - run.finished_at > DRY_RUNS_KEPT_FOR:
                del self.dry_runs[key]

    def dry_run(self, console: Console, run_id: uuid.UUID) -> DryRun:
        run = self.dry_runs.get(run_id)
        if run is None or run.tenant_id != console.principal.tenant_id:
            raise ConsoleProblem(
                404,
                "Not found",
                "This dry run is not known here: its result is kept for an hour by the server "
                "that ran it. Run it again.",
            )
        return run


def upload_tasks(request: Request) -> UploadTasks:
    tasks: UploadTasks = request.app.state.console_uploads
    return tasks


@dataclass(slots=True)
class Upload:
    """One accepted upload on its way through `run_import`."""

    tenant_id: uuid.UUID
    source_name: str
    folder: Path
    path: Path
    actor_id: str
    progress: FileProgress
    started: asyncio.Future[uuid.UUID]
    import_id: uuid.UUID | None = None


async def _import_in_background(db: Database, tasks: UploadTasks, upload: Upload) -> None:
    """Runs after the request has answered: every outcome lands in the import's row (which
    `run_import` marks failed on an error), never in an exception nobody awaits."""

    def on_started(import_id: uuid.UUID) -> None:
        upload.import_id = import_id
        tasks.progress[import_id] = upload.progress
        if not upload.started.done():
            upload.started.set_result(import_id)

    try:
        await csv_import.run_import(
            db,
            upload.tenant_id,
            source_name=upload.source_name,
            path=upload.path,
            mapping={},
            dry_run=False,
            progress=upload.progress.advance,
            actor_type="user",
            actor_id=upload.actor_id,
            on_started=on_started,
        )
    except asyncio.CancelledError:
        if upload.import_id is not None:
            with contextlib.suppress(Exception):
                await _mark_failed(db, upload.tenant_id, upload.import_id, INTERRUPTED)
        raise
    except Exception as error:
        if upload.import_id is None:  # refused before its row existed: the request says so
            if not upload.started.done():
                upload.started.set_exception(error)
            return
        log.exception("console.import_failed", import_id=str(upload.import_id))
        # `run_import` marks the rows it was writing; anything later must not leave it running.
        with contextlib.suppress(Exception):
            reason = f"{type(error).__name__}: {error}"[:2000]
            await _mark_failed(db, upload.tenant_id, upload.import_id, reason)
    finally:
        if upload.import_id is not None:
            tasks.progress.pop(upload.import_id, None)
        shutil.rmtree(upload.folder, ignore_errors=True)


async def _mark_failed(
    db: Database, tenant_id: uuid.UUID, import_id: uuid.UUID, reason: str
) -> None:
    async with db.session(tenant_id) as session:
        await session.execute(
            update(LeadImport)
            .where(LeadImport.id == import_id, LeadImport.status == ImportStatus.RUNNING)
            .values(status=ImportStatus.FAILED, error=reason, finished_at=utcnow())
        )


async def _dry_run_in_background(
    db: Database, run: DryRun, *, path: Path, folder: Path, actor_id: str
) -> None:
    try:
        run.summary = await csv_import.run_import(
            db,
            run.tenant_id,
            source_name=run.source_name,
            path=path,
            mapping={},
            dry_run=True,
            report=run.report,
            progress=run.progress.advance,
            actor_type="user",
            actor_id=actor_id,
        )
    except LeadRelayError as error:
        run.error = error.detail
    except Exception:
        log.exception("console.dry_run_failed", dry_run=str(run.id))
        run.error = "the check stopped on an unexpected error; see the server log"
    finally:
        run.finished_at = utcnow()
        shutil.rmtree(folder, ignore_errors=True)


# --- reading -------------------------------------------------------------------------------


async def list_imports(session: AsyncSession, *, limit: int) -> list[LeadImport]:
    return list(
        await session.scalars(
            select(LeadImport)
            .order_by(LeadImport.created_at.desc(), LeadImport.id.desc())
            .limit(limit)
        )
    )


async def _access_import(session: AsyncSession, import_id: uuid.UUID) -> LeadImport:
    # Row-level security hides other tenants' imports: they are as missing as unknown ones.
    found = await session.get(LeadImport, import_id)
    if found is None:
        raise ConsoleProblem(404, "Not found", "This import does not exist.")
    return found


async def _first_issues(session: AsyncSession, import_id: uuid.UUID) -> list[ImportIssue]:
    return list(
        await session.scalars(
            select(ImportIssue)
            .where(ImportIssue.import_id == import_id)
            .order_by(ImportIssue.line, ImportIssue.id)
            .limit(ISSUES_SHOWN)
        )
    )


def report_cells(
    line: int, status: str, errors: list[dict[str, str]], lead_id: uuid.UUID | None = None
) -> Iterator[list[str]]:
    """The error report's rows for one input line: one per reason (a duplicate has none, so it
    names the lead it matched)."""
    if not errors:
        reason = f"duplicate of lead {lead_id}" if lead_id else status
        yield [str(line), status, "", reason]
    for error in errors:
        yield [str(line), status, str(error.get("field", "")), str(error.get("reason", ""))]


async def _csv_chunks(rows: AsyncIterator[Iterable[list[str]]]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_COLUMNS)
    async for cells in rows:
        writer.writerows([neutralize_cell(cell) for cell in row] for row in cells)
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_download(chunks: AsyncIterator[str], filename: str) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "content-disposition": f'attachment; filename="{filename}"'},
    )


# --- pages -------------------------------------------------------------------------------


async def _panel(
    request: Request,
    console: Console,
    *,
    current: LeadImport | None = None,
    dry_run: DryRun | None = None,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    refusal: LeadRelayError | None = None,
    notices: list[Notice] | None = None,
    status: int = 200,
) -> Response:
    session = console.session
    all_sources = await sources.list_sources(session)
    imports = await list_imports(session, limit=RECENT_IMPORTS)
    # Imports still running get a live card; the one just started comes first.
    cards = [item for item in imports if item.status == ImportStatus.RUNNING]
    if current is not None:
        cards = [current, *(item for item in cards if item.id != current.id)]
    tasks = upload_tasks(request)
    context: dict[str, Any] = {
        "imports": imports,
        "cards": [
            {
                "item": item,
                "progress": tasks.progress.get(item.id),
                "issues": []
                if item.status == ImportStatus.RUNNING
                else await _first_issues(session, item.id),
            }
            for item in cards
        ],
        "dry_run": dry_run,
        "source_names": {source.id: source.name for source in all_sources},
        "vetted_sources": [
            source
            for source in all_sources
            if source.status == SourceStatus.VETTED and not source.is_personal_profile
        ],
        "can_upload": console.can(Permission.LEADS_WRITE),
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "form": form or {},
        "errors": errors or {},
        "refusal": refusal,
        "panel_notices": notices or [],
    }
    template = "imports/_panel.html" if is_htmx(request) else "imports/page.html"
    return render(request, template, context, status=status)


@router.get("")
async def imports_page(request: Request, console: ViewLeads) -> Response:
    if is_htmx(request) and request.headers.get("hx-target") == "imports-list":
        all_sources = await sources.list_sources(console.session)
        return render(
            request,
            "imports/_list.html",
            {
                "imports": await list_imports(console.session, limit=RECENT_IMPORTS),
                "source_names": {source.id: source.name for source in all_sources},
            },
        )
    return await _panel(request, console)


class UploadTooLarge(Exception):
    """The file is over the console's upload limit."""


async def _save_upload(file: UploadFile, path: Path) -> int:
    """Copy the upload to `path` a chunk at a time; its size in bytes."""
    size = 0
    async with await anyio.open_file(path, "wb") as out:
        while chunk := await file.read(COPY_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise UploadTooLarge
            await out.write(chunk)
    return size


def _new_upload_folder(data_dir: Path) -> Path:
    """A private folder per upload under the data directory, removed when its import ends."""
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="import-", dir=uploads))


def _safe_filename(name: str) -> str:
    """The uploaded file's own name, without any directory or control character."""
    base = PurePosixPath(name.replace("\\", "/")).name
    cleaned = "".join(character for character in base if character.isprintable()).strip()
    return cleaned[:200] if cleaned not in {"", ".", ".."} else "upload.csv"


@router.post("")
async def upload(
    request: Request,
    console: WriteLeads,
    file: Annotated[UploadFile | None, File()] = None,
    source: Annotated[str, Form(max_length=200)] = "",
    dry_run: Annotated[bool, Form()] = False,
) -> Response:
    form = {"source": source, "dry_run": dry_run}
    if file is None or not file.filename:
        errors = {"file": "Choose a CSV file to import."}
        return await _panel(request, console, form=form, errors=errors, status=422)
    try:
        sources.check_source_accepts(
            await sources.get_source_by_name(console.session, source), name=source
        )
    except LeadRelayError as error:
        return await _panel(
            request, console, form=form, errors={"source": error.detail}, status=422
        )
    folder = await anyio.to_thread.run_sync(_new_upload_folder, settings_of(request).data_dir)
    path = folder / _safe_filename(file.filename)
    try:
        size = await _save_upload(file, path)
        # Refusals of the whole file (no contact column, empty) are answered here, at once.
        await anyio.to_thread.run_sync(csv_import.plan_layout, path, {})
    except UploadTooLarge:
        shutil.rmtree(folder, ignore_errors=True)
        limit = MAX_UPLOAD_BYTES // (1024 * 1024)
        errors = {"file": f"The file is larger than {limit} MB. Split it, or use the CLI."}
        return await _panel(request, console, form=form, errors=errors, status=413)
    except csv_import.CsvRefused as error:
        shutil.rmtree(folder, ignore_errors=True)
        return await _panel(request, console, form=form, refusal=error, status=422)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        await file.close()

    tasks = upload_tasks(request)
    db = database(request)
    tenant_id, actor_id = console.principal.tenant_id, str(console.principal.id)
    if dry_run:
        now = utcnow()
        tasks.forget_old_dry_runs(now)
        run = DryRun(uuid.uuid4(), tenant_id, path.name, source, now, FileProgress(size))
        tasks.dry_runs[run.id] = run
        tasks.spawn(_dry_run_in_background(db, run, path=path, folder=folder, actor_id=actor_id))
        if not is_htmx(request):
            return RedirectResponse(f"/console/imports/dry-runs/{run.id}", status_code=303)
        return await _panel(request, console, dry_run=run, form=form, status=202)

    started: asyncio.Future[uuid.UUID] = asyncio.get_running_loop().create_future()
    job = Upload(tenant_id, source, folder, path, actor_id, FileProgress(size), started)
    tasks.spawn(_import_in_background(db, tasks, job))
    try:
        import_id = await asyncio.wait_for(asyncio.shield(started), START_TIMEOUT_SECONDS)
    except TimeoutError:
        # Still reading the head of the file or waiting for the database: it will show up.
        started.add_done_callback(lambda done: done.cancelled() or done.exception())
        notice = Notice("info", f"{path.name} is starting; it will appear in the list below.")
        return await _panel(request, console, form=form, notices=[notice], status=202)
    except LeadRelayError as error:  # e.g. the source was blocked a moment ago
        return await _panel(request, console, form=form, refusal=error, status=422)
    except Exception:
        log.exception("console.import_not_started", source=source)
        notice = Notice("error", "The import could not start. Please try again.")
        return await _panel(request, console, form=form, notices=[notice], status=500)
    if not is_htmx(request):
        return RedirectResponse(f"/console/imports/{import_id}", status_code=303)
    current = await _access_import(console.session, import_id)
    return await _panel(request, console, current=current, form=form, status=202)


@router.get("/dry-runs/{run_id}")
async def dry_run_status(request: Request, console: ViewLeads, run_id: uuid.UUID) -> Response:
    run = upload_tasks(request).dry_run(console, run_id)
    if is_htmx(request):
        return render(request, "imports/_dry_run.html", {"dry_run": run})
    return await _panel(request, console, dry_run=run)


@router.get("/dry-runs/{run_id}/errors.csv")
async def dry_run_report(
    request: Request, console: ViewLeads, run_id: uuid.UUID
) -> StreamingResponse:
    run = upload_tasks(request).dry_run(console, run_id)

    async def rows() -> AsyncIterator[Iterable[list[str]]]:
        for issue in run.report.issues:
            yield report_cells(issue.line, issue.status, issue.errors)

    return _csv_download(_csv_chunks(rows()), f"dry-run-{str(run.id)[:8]}-errors.csv")


@router.get("/{import_id}")
async def import_page(request: Request, console: ViewLeads, import_id: uuid.UUID) -> Response:
    item = await _access_import(console.session, import_id)
    finished = item.status != ImportStatus.RUNNING
    context: dict[str, Any] = {
        "card": {
            "item": item,
            "progress": upload_tasks(request).progress.get(item.id),
            "issues": await _first_issues(console.session, item.id) if finished else [],
        },
        "source_names": {s.id: s.name for s in await sources.list_sources(console.session)},
    }
    if is_htmx(request):
        # A finished import tells the list on the page to refresh its row.
        headers = {"hx-trigger": "imports-changed"} if finished else None
        return render(request, "imports/_progress.html", context, headers=headers)
    return render(request, "imports/detail.html", context)


@router.get("/{import_id}/errors.csv")
async def error_report(
    request: Request, console: ViewLeads, import_id: uuid.UUID
) -> StreamingResponse:
    item = await _access_import(console.session, import_id)
    tenant_id = console.principal.tenant_id
    db = database(request)

    async def rows() -> AsyncIterator[Iterable[list[str]]]:
        # The request's own transaction has ended by the time the body streams: the report
        # reads in its own, bound to the same tenant.
        async with db.session(tenant_id) as session:
            issues = await session.stream_scalars(
                select(ImportIssue)
                .where(ImportIssue.import_id == import_id)
                .order_by(ImportIssue.line, ImportIssue.id)
                .execution_options(yield_per=1000)
            )
            async for issue in issues:
                yield report_cells(issue.line, issue.status, issue.errors, issue.lead_id)

    return _csv_download(_csv_chunks(rows()), f"import-{str(item.id)[:8]}-errors.csv")
