"""CSV import: streamed in bounded memory, encoding and delimiter detected, every row reported.

Rows go through `intake.ingest` a thousand at a time, each chunk in its own transaction, so a
million-row file holds one chunk in memory and a failure loses at most the chunk being written
(the import row says where it stopped). No row is dropped silently: each is accepted, a
duplicate of an existing lead, or rejected with its line number, field and reason.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import itertools
import json
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from annotated_types import MaxLen
from charset_normalizer import from_bytes
from pydantic import ValidationError
from sqlalchemy import insert, text, update

from leadrelay.capture import intake, sources
from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.models import ImportIssue, ImportStatus, LeadImport
from leadrelay.capture.schemas import LeadIn
from leadrelay.compliance.audit import AuditEntry, append_events
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.errors import ValidationFailed
from leadrelay.core.logging import get_logger
from leadrelay.identity.models import Tenant
from leadrelay.identity.service import system_principal

log = get_logger("leadrelay.capture.import")

CHUNK_ROWS = 1000
ANALYZE_FIRST_AT = 1000  # accepted leads
# From this size (≈ 7,000 rows) a file is normalized in a process of its own.
NORMALIZER_PROCESS_BYTES = 1024 * 1024
SAMPLE_BYTES = 64 * 1024
# Common header spellings, so most files need no --map.
ALIASES = {
    "name": "full_name",
    "fullname": "full_name",
    "full name": "full_name",
    "first name": "first_name",
    "firstname": "first_name",
    "last name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "e-mail": "email",
    "email address": "email",
    "mail": "email",
    "phone number": "phone",
    "telephone": "phone",
    "mobile": "phone",
    "tel": "phone",
    "organisation": "company",
    "organization": "company",
    "company name": "company",
    "url": "website",
    "web": "website",
    "site": "website",
    "job title": "title",
    "position": "title",
    "id": "external_id",
    "external id": "external_id",
}


class CsvRefused(ValidationFailed):
    """The file cannot be imported as it is."""

    code = "csv-refused"


@dataclass(frozen=True, slots=True)
class Layout:
    encoding: str
    delimiter: str
    columns: tuple[str, ...]  # header as in the file
    fields: tuple[str | None, ...]  # the lead field each column maps to (None: ignored)
    size: int = 0  # bytes

    @property
    def ignored(self) -> list[str]:
        return [c for c, f in zip(self.columns, self.fields, strict=True) if f is None]


def detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the end of the sample is still UTF-8.
        if error.start >= len(sample) - 3:
            return "utf-8"
    matches = list(from_bytes(sample))
    if not matches:
        return "cp1252"
    best = matches[0]
    tied = {m.encoding for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    # Equally plausible single-byte guesses: spreadsheets mostly export Windows-1252.
    return "cp1252" if "cp1252" in tied else best.encoding


DELIMITERS = (",", ";", "\t", "|")


def detect_delimiter(text: str) -> str:
    """The candidate that splits the header into the most cells and the next lines into as
    many (csv.Sniffer is easily fooled by blank lines and ragged rows)."""
    lines = [line for line in text.splitlines() if line.strip()][:20]
    if not lines:
        return ","

    def score(delimiter: str) -> tuple[int, int]:
        widths = [len(next(csv.reader([line], delimiter=delimiter))) for line in lines]
        consistent = sum(1 for width in widths[1:] if width == widths[0])
        return widths[0], consistent

    best = max(DELIMITERS, key=lambda d: (score(d)[0] > 1, score(d)[1], score(d)[0]))
    return best if score(best)[0] > 1 else ","


def plan_layout(path: Path, mapping: Mapping[str, str]) -> Layout:
    """Read the head of the file: encoding, delimiter, header and the column → field map."""
    with path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    if not sample.strip():
        raise CsvRefused("the file is empty", errors=[{"field": "file", "message": "empty"}])
    encoding = detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    delimiter = detect_delimiter(text[: SAMPLE_BYTES // 2])
    header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    columns = tuple(h.strip() for h in header)
    known = set(intake.INPUT_FIELDS)
    unknown_targets = sorted(set(mapping.values()) - known)
    if unknown_targets:
        raise CsvRefused(
            f"--map names unknown fields: {', '.join(unknown_targets)}",
            errors=[{"field": "map", "message": f"known fields: {', '.join(intake.INPUT_FIELDS)}"}],
        )
    fields: list[str | None] = []
    for column in columns:
        target = mapping.get(column)
        if target is None:
            lowered = column.lower().strip()
            target = lowered if lowered in known else ALIASES.get(lowered)
        fields.append(target)
    missing_columns = sorted(set(mapping) - set(columns))
    if missing_columns:
        raise CsvRefused(
            f"--map names columns the file does not have: {', '.join(missing_columns)}",
            errors=[{"field": "map", "message": f"columns: {', '.join(columns)}"}],
        )
    if not {"email", "phone"} & set(fields):
        raise CsvRefused(
            "missing required columns: the file needs an e-mail or a phone column",
            errors=[
                {"field": "header", "message": f"found columns: {', '.join(columns) or 'none'}"}
            ],
        )
    return Layout(encoding, delimiter, columns, tuple(fields), size=path.stat().st_size)


@dataclass(slots=True)
class SourceRow:
    line: int
    fields: dict[str, str | None]
    errors: list[dict[str, str]]


def read_rows(
    path: Path, layout: Layout, *, progress: Callable[[int], None] | None = None
) -> Generator[SourceRow, None, None]:
    """Stream the data rows with their line numbers. Undecodable bytes, ragged rows and
    invalid values become row errors, never a crash and never a silent skip."""
    raw = path.open("rb")
    text: IO[str] = io.TextIOWrapper(
        raw, encoding=layout.encoding, errors="surrogateescape", newline=""
    )
    try:
        reader = csv.reader(text, delimiter=layout.delimiter)
        next(reader, None)  # header
        last_reported = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                yield SourceRow(
                    reader.line_num, {}, [{"field": "*", "reason": f"csv_error: {error}"}]
                )
                continue
            if progress is not None:
                position = raw.tell()
                if position - last_reported >= 256 * 1024:
                    progress(position - last_reported)
                    last_reported = position
            if not any(cell.strip() for cell in record):
                continue  # a blank line is not a row
            yield _row(reader.line_num, record, layout)
        if progress is not None:
            progress(raw.tell() - last_reported)
    finally:
        text.close()


def _text_limits() -> dict[str, int]:
    """LeadIn's length limit per lead field, for the fields `_row` may check by hand: plain
    optional text whose only constraint is a maximum length. Empty (every row goes through
    pydantic) as soon as LeadIn validates anything else than those limits, its NUL check and
    its refusal of unknown fields."""
    decorators = LeadIn.__pydantic_decorators__
    if (
        dict(LeadIn.model_config) != {"extra": "forbid"}
        or set(decorators.field_validators) != {"_refuse_nul"}
        or decorators.model_validators
        or decorators.validators
        or decorators.root_validators
    ):
        return {}
    limits: dict[str, int] = {}
    for name, info in LeadIn.model_fields.items():
        constraints = info.metadata
        if (
            info.annotation == (str | None)
            and info.alias is None
            and info.validation_alias is None
            and len(constraints) == 1
            and isinstance(constraints[0], MaxLen)
        ):
            limits[name] = constraints[0].max_length
    return limits


_TEXT_LIMITS = _text_limits()


def _row(line: int, record: Sequence[str], layout: Layout) -> SourceRow:
    errors: list[dict[str, str]] = []
    if len(record) != len(layout.columns):
        errors.append(
            {
                "field": "*",
                "reason": f"ragged_row: {len(record)} cells, the header has {len(layout.columns)}",
            }
        )
        return SourceRow(line, {}, errors)
    values: dict[str, str | None] = {}
    # Validating with pydantic costs more than reading the row, and nearly every row passes:
    # the checks LeadIn makes are made here, and pydantic, which words the errors, sees only
    # rows that fail one of them (or carry a field they do not cover).
    plain = True
    for cell, target in zip(record, layout.fields, strict=True):
        if target is None:
            continue
        if not cell.isascii():
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                errors.append({"field": target, "reason": "bad_encoding"})
                continue
        value = cell.strip()
        if value:
            values[target] = value
            if plain and (len(value) > _TEXT_LIMITS.get(target, -1) or "\x00" in value):
                plain = False
        else:
            values[target] = None
            if plain and target not in _TEXT_LIMITS:
                plain = False
    if not errors and not plain:
        try:
            LeadIn.model_validate({"source": "-", **values})
        except ValidationError as error:
            errors.extend(
                {"field": ".".join(str(p) for p in e["loc"]), "reason": e["type"]}
                for e in error.errors()
            )
    return SourceRow(line, values, errors)


class ChunkReader:
    """`read_rows` a chunk at a time, each chunk read by whichever thread calls `read`.

    One lock keeps the rows' iterator in one thread at a time (a generator advanced by two
    raises). Progress is recorded while a chunk is read and handed back with it, so the caller
    reports it from its own thread, in the amounts `read_rows` gave. After `close` (which
    waits for a read in progress), `read` answers an empty chunk."""

    def __init__(self, path: Path, layout: Layout, *, size: int, track_progress: bool) -> None:
        self._progressed: list[int] = []
        self._rows = read_rows(
            path, layout, progress=self._progressed.append if track_progress else None
        )
        self._size = size
        self._lock = threading.Lock()
        self._closed = False

    def read(self) -> tuple[list[SourceRow], list[int]]:
        """The next chunk (empty at the end) and the progress made reading it."""
        with self._lock:
            if self._closed:
                return [], []
            chunk = list(itertools.islice(self._rows, self._size))
            progressed = self._progressed[:]
            self._progressed.clear()
            return chunk, progressed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._rows.close()


@dataclass(slots=True)
class ImportSummary:
    import_id: uuid.UUID | None
    rows: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    encoding: str = ""
    delimiter: str = ""


def _report_line(row: SourceRow, result: intake.RowResult | None) -> dict[str, Any]:
    if result is None:  # refused before intake (ragged, undecodable, invalid value)
        return {"line": row.line, "status": "rejected", "errors": row.errors, "lead": {}}
    return {
        "line": row.line,
        "status": result.status.value,
        "errors": result.errors,
        "lead": result.lead,
        "lead_id": str(result.lead_id) if result.lead_id else None,
        **({"dropped_fields": result.dropped_fields} if result.dropped_fields else {}),
    }


async def run_import(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    source_name: str,
    path: Path,
    mapping: Mapping[str, str],
    dry_run: bool = False,
    report: IO[str] | None = None,
    progress: Callable[[int], None] | None = None,
    actor_type: str = "system",
    actor_id: str | None = None,
    on_started: Callable[[uuid.UUID], None] | None = None,
) -> ImportSummary:
    """Import the file. `on_started` is called with the import's id as soon as its row is
    committed (never on a dry run), so a caller running this in the background can show its
    progress; refusals of the whole file (`CsvRefused`, `SourceRefused`) come before it."""
    layout = plan_layout(path, mapping)
    async with db.session(tenant_id) as session:
        source = sources.check_source_accepts(
            await sources.get_source_by_name(session, source_name), name=source_name
        )
        tenant = await session.get(Tenant, tenant_id)
        policy = intake.CapturePolicy.from_settings(tenant.settings if tenant else {})
        import_id: uuid.UUID | None = None
        if not dry_run:
            job = LeadImport(
                tenant_id=tenant_id,
                source_id=source.id,
                filename=path.name[:300],
                status=ImportStatus.RUNNING,
            )
            session.add(job)
            await session.flush()
            import_id = job.id
    summary = ImportSummary(
        import_id,
        ignored_columns=layout.ignored,
        encoding=layout.encoding,
        delimiter=layout.delimiter,
    )
    if import_id is not None and on_started is not None:
        on_started(import_id)

    # Normalizing is pure Python CPU. A file of more than a few chunks gets a process of its
    # own for it, so it runs beside the writes instead of taking turns with them for the
    # interpreter lock. The process takes a second or two to start: chunks go to a thread
    # until it is ready, so a file never waits for it.
    normalizer = (
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        if layout.size >= NORMALIZER_PROCESS_BYTES
        else None
    )
    loop = asyncio.get_running_loop()
    normalizer_ready = (
        loop.run_in_executor(normalizer, intake.prepare, [], clean_lead, None, policy)
        if normalizer is not None
        else None
    )

    process_lost = False

    def process_ready() -> bool:
        return (
            not process_lost
            and normalizer_ready is not None
            and normalizer_ready.done()
            and normalizer_ready.exception() is None
        )

    async def prepare(chunk: list[SourceRow]) -> intake.PreparedChunk:
        nonlocal process_lost
        rows = [row.fields for row in chunk if not row.errors]
        args = (rows, clean_lead, source.default_country, policy)
        if normalizer is not None and process_ready():
            try:
                return await loop.run_in_executor(normalizer, intake.prepare, *args)
            except BrokenProcessPool:  # killed (out of memory, a signal): the thread goes on
                log.warning("import.normalizer_lost", import_id=str(import_id))
                process_lost = True
        return await asyncio.to_thread(intake.prepare, *args)

    # Statistics refreshed when the leads this import added reach 1,000, then 4×, 16× … that:
    # the tables grow faster than autovacuum re-analyses them, and its jobs (verification,
    # dedup) running meanwhile would be planned for the tables as they were (see migration
    # 0023). A few ANALYZEs over any run, each of a fixed sample.
    analyze_at = ANALYZE_FIRST_AT

    def start_prepare(chunk: list[SourceRow]) -> asyncio.Future[intake.PreparedChunk]:
        """Normalize a chunk while the event loop writes the one before it."""
        return asyncio.ensure_future(prepare(chunk))

    async def flush(chunk: list[SourceRow], prepared: asyncio.Future[intake.PreparedChunk]) -> None:
        nonlocal analyze_at
        await write(chunk, prepared)
        if not dry_run and summary.accepted >= analyze_at:
            analyze_at = summary.accepted * 4
            async with db.session() as session:
                await session.execute(text("SELECT app_analyze_leads()"))

    async def write(chunk: list[SourceRow], prepared: asyncio.Future[intake.PreparedChunk]) -> None:
        now = utcnow()
        async with db.session(tenant_id) as session:
            chunk_source = await sources.access_source(
                session, system_principal(tenant_id), source.id
            )
            good = [row for row in chunk if not row.errors]
            results = (
                await intake.ingest(
                    session,
                    chunk_source,
                    [row.fields for row in good],
                    normalize=clean_lead,
                    policy=policy,
                    now=now,
                    actor_type=actor_type,
                    actor_id=actor_id,
                    import_id=import_id,
                    dry_run=dry_run,
                    prepared=await prepared,
                )
                if good
                else []
            )
            by_line = {row.line: result for row, result in zip(good, results, strict=True)}
            issues = []
            for row in chunk:
                result = by_line.get(row.line)
                line = _report_line(row, result)
                if report is not None:
                    report.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
                summary.rows += 1
                status = line["status"]
                if status == "accepted":
                    summary.accepted += 1
                elif status == "duplicate":
                    summary.duplicate += 1
                else:
                    summary.rejected += 1
                if status != "accepted" and import_id is not None:
                    issues.append(
                        {
                            "tenant_id": tenant_id,
                            "import_id": import_id,
                            "line": row.line,
                            "status": status,
                            "errors": line["errors"],
                            "lead_id": result.lead_id if result else None,
                        }
                    )
            if dry_run:
                await session.rollback()
                return
            if issues:
                await session.execute(insert(ImportIssue), issues)
            await session.execute(
                update(LeadImport)
                .where(LeadImport.id == import_id)
                .values(
                    rows_total=summary.rows,
                    rows_accepted=summary.accepted,
                    rows_duplicate=summary.duplicate,
                    rows_rejected=summary.rejected,
                )
            )

    # A three-stage pipeline: while chunk N is matched and written, chunk N+1 is normalized
    # and chunk N+2 read (file, CSV, validation) in a thread. Writes stay in file order, so
    # exact matching sees every earlier row. At most three chunks are held at once.
    reader = ChunkReader(path, layout, size=CHUNK_ROWS, track_progress=progress is not None)

    def start_read() -> asyncio.Future[tuple[list[SourceRow], list[int]]]:
        return asyncio.ensure_future(asyncio.to_thread(reader.read))

    async def next_chunk(
        reading: asyncio.Future[tuple[list[SourceRow], list[int]]],
    ) -> list[SourceRow]:
        chunk, progressed = await reading
        if progress is not None:
            for count in progressed:
                progress(count)
        return chunk

    pending: tuple[list[SourceRow], asyncio.Future[intake.PreparedChunk]] | None = None
    reading: asyncio.Future[tuple[list[SourceRow], list[int]]] | None = None
    try:
        reading = start_read()
        chunk = await next_chunk(reading)
        while chunk:
            started = (chunk, start_prepare(chunk))
            reading = start_read()
            if pending is not None:
                await flush(*pending)
            pending = started
            chunk = await next_chunk(reading)
        if pending is not None:
            await flush(*pending)
            pending = None
    except Exception as error:
        if pending is not None:  # let the normalizer finish; its result is not needed
            await asyncio.gather(pending[1], return_exceptions=True)
        if reading is not None:  # and the reader, so the file is closed after it
            await asyncio.gather(reading, return_exceptions=True)
        if import_id is not None:
            async with db.session(tenant_id) as session:
                await session.execute(
                    update(LeadImport)
                    .where(LeadImport.id == import_id)
                    .values(
                        status=ImportStatus.FAILED,
                        error=f"{type(error).__name__}: {error}"[:2000],
                        finished_at=utcnow(),
                    )
                )
        raise
    finally:
        # Waits only when cancelled while a chunk is being read: then the thread still is.
        reader.close()
        if normalizer is not None:
            if normalizer_ready is not None and not normalizer_ready.done():
                normalizer_ready.cancel()
            normalizer.shutdown(wait=False, cancel_futures=True)
    if import_id is not None:
        async with db.session(tenant_id) as session:
            await session.execute(
                update(LeadImport)
                .where(LeadImport.id == import_id)
                .values(status=ImportStatus.DONE, finished_at=utcnow())
            )
            await append_events(
                session,
                tenant_id,
                [
                    AuditEntry(
                        "import.finished",
                        actor_type=actor_type,
                        actor_id=actor_id,
                        target_type="lead_import",
                        target_id=str(import_id),
                        data={
                            "rows": summary.rows,
                            "accepted": summary.accepted,
                            "duplicate": summary.duplicate,
                            "rejected": summary.rejected,
                        },
                    )
                ],
                now=utcnow(),
            )
    return summary
