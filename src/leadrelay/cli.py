"""`leadrelay …`: the operator's command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.settings import Settings, SettingsError, get_settings

T = TypeVar("T")
app = typer.Typer(
    help="LeadRelay: lead-to-conversation platform, compliance first.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
dead_letters_app = typer.Typer(help="Jobs that failed their last try.", no_args_is_help=True)
api_keys_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
users_app = typer.Typer(help="Console users.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(users_app, name="users")
export_app = typer.Typer(help="Export data.", no_args_is_help=True)
app.add_typer(export_app, name="export")
outcomes_app = typer.Typer(help="CRM outcomes (won, lost, disqualified).", no_args_is_help=True)
app.add_typer(outcomes_app, name="outcomes")
dnc_app = typer.Typer(help="Do-not-call lists.", no_args_is_help=True)
app.add_typer(dnc_app, name="dnc")
dsar_app = typer.Typer(help="Data-subject requests: export, erasure.", no_args_is_help=True)
app.add_typer(dsar_app, name="dsar")

console = Console()
err = Console(stderr=True)

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant slug.")]


def _settings() -> Settings:
    from leadrelay.core.logging import configure_logging

    try:
        settings = get_settings()
    except SettingsError as error:
        typer.echo(str(error), err=True)  # one line, never wrapped
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


def _with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run one command's work with the app role's database (no migration); a domain error
    becomes one red line and exit code 1."""
    from leadrelay.core.errors import LeadRelayError

    urls = _prepare(_settings(), migrate=False)

    async def main() -> T:
        db = Database(urls)
        try:
            return await work(db)
        except LeadRelayError as error:
            err.print(f"[red]{error.detail}[/]")
            for item in error.errors:
                err.print(f"  {item.get('field')}: {item.get('message')}")
            raise typer.Exit(1) from None
        finally:
            await db.dispose()

    return asyncio.run(main())


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_factory()

    return asyncio.run(main())


def _prepare(settings: Settings, *, migrate: bool = True) -> DatabaseUrls:
    """Start the embedded server if needed, migrate, and return the database URLs."""
    from leadrelay.core.db import resolve_urls
    from leadrelay.core.migrate import migrate as run_migrations

    try:
        urls = resolve_urls(settings)
    except Exception as error:
        err.print(f"[red]cannot reach PostgreSQL: {error}[/red]")
        raise typer.Exit(1) from None
    if migrate:
        run_migrations(urls)
    return urls


async def _tenant_id(db: Database, slug: str) -> uuid.UUID:
    from leadrelay.core.db import all_tenants

    async with db.session() as session:
        tenants = await all_tenants(session)
    if slug not in tenants:
        err.print(f"[red]no tenant {slug!r}; known: {', '.join(sorted(tenants)) or 'none'}[/red]")
        raise typer.Exit(1)
    return tenants[slug]


@app.command()
def migrate() -> None:
    """Create the app role, apply migrations, grant the app role its rights."""
    settings = _settings()
    _prepare(settings)
    console.print("[green]database is up to date[/green]")


@app.command()
def demo() -> None:
    """Load the demo tenants (only into an empty database) and print the logins."""
    from leadrelay.core.db import Database
    from leadrelay.demo import load_demo

    settings = _settings()
    urls = _prepare(settings)

    async def go() -> None:
        db = Database(urls)
        try:
            logins = await load_demo(db)
        finally:
            await db.dispose()
        _print_logins(settings, logins)

    _run(go)


def _print_logins(settings: Settings, logins: Sequence[object]) -> None:
    table = Table(title=f"Console: {settings.public_url}/console")
    for column in ("tenant", "e-mail", "role", "password"):
        table.add_column(column)
    for login in logins:
        table.add_row(*(str(getattr(login, k)) for k in ("tenant", "email", "role", "password")))
    console.print(table)


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once.")] = None,
    once: Annotated[bool, typer.Option(help="Run what is queued, then exit.")] = False,
) -> None:
    """Run queued jobs until stopped (Ctrl-C)."""
    from leadrelay.worker import run_worker

    settings = _settings()
    urls = _prepare(settings, migrate=False)
    _run(lambda: run_worker(settings, urls, concurrency=concurrency, wait=not once))


@app.command("inbound-smtp")
def inbound_smtp(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 2525,
) -> None:
    """Receive replies by SMTP (behind the MTA for your reply domain) until stopped."""
    from leadrelay.core.security import secret_keys
    from leadrelay.telemetry.smtp_inbound import InboundSmtpHandler, serve

    settings = _settings()
    urls = _prepare(settings, migrate=False)

    async def listen() -> None:
        db = Database(urls)
        handler = InboundSmtpHandler(db, settings, secret_keys(settings))
        console.print(f"[green]receiving replies on {host}:{port}[/green]")
        try:
            await serve(handler, host=host, port=port)
        finally:
            await db.dispose()

    try:
        _run(listen)
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    with_worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also run a worker process.")
    ] = True,
    load_demo_data: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Load demo data into an empty database.")
    ] = False,
) -> None:
    """Serve the API and the console (and a worker); Ctrl-C stops everything it started."""
    import uvicorn

    from leadrelay.app import create_app
    from leadrelay.core import embedded_pg
    from leadrelay.core.db import Database, embedded_server
    from leadrelay.demo import demo_logins, load_demo

    settings = _settings()
    started_pg = False
    if settings.uses_embedded_postgres:
        server = embedded_server(settings)
        started_pg = not embedded_pg.is_running(server)
    urls = _prepare(settings)
    if load_demo_data:

        async def seed() -> None:
            db = Database(urls)
            try:
                await load_demo(db)
            finally:
                await db.dispose()

        _run(seed)
        _print_logins(settings, list(demo_logins()))
    worker_process = None
    if with_worker:
        worker_process = subprocess.Popen(
            [sys.executable, "-m", "leadrelay", "worker"], start_new_session=True
        )
    bind_host, bind_port = host or settings.host, port or settings.port
    console.print(
        f"[bold green]LeadRelay[/] console: http://{bind_host}:{bind_port}/console "
        f"· API docs: http://{bind_host}:{bind_port}/docs · dry-run: {settings.dry_run}"
    )
    try:
        uvicorn.run(
            create_app(settings),
            host=bind_host,
            port=bind_port,
            log_level="warning",
            access_log=False,
        )
    finally:
        if worker_process is not None:
            worker_process.send_signal(signal.SIGTERM)
            try:
                worker_process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker_process.kill()
        if started_pg:
            embedded_pg.stop(embedded_server(settings))
        console.print("stopped")


@audit_app.command("verify")
def audit_verify(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")] = None,
) -> None:
    """Recompute every tenant's hash chain; exit 1 if any link was changed, removed or moved."""
    from leadrelay.compliance.audit import verify_chain
    from leadrelay.core.db import all_tenants

    async def go(db: Database) -> bool:
        async with db.session() as session:
            tenants = await all_tenants(session)
        if tenant is not None:
            tenants = {tenant: await _tenant_id(db, tenant)}
        ok = True
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("verifying", total=len(tenants))
            for slug, tenant_id in tenants.items():
                async with db.session(tenant_id) as session:
                    report = await verify_chain(session, tenant_id)
                progress.advance(task)
                if report.ok:
                    console.print(f"[green]✓[/] {slug}: {report.checked} links intact")
                else:
                    ok = False
                    console.print(f"[red]✗ {slug}: {report.reason}[/]")
        return ok

    if not _with_database(go):
        raise typer.Exit(1)


@dead_letters_app.command("list")
def dead_letters_list(
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Tenant slug; none: system jobs.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List dead letters (newest first)."""
    from leadrelay.ops.service import list_dead_letters

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant) if tenant else None
        async with db.session(tenant_id) as session:
            letters = await list_dead_letters(session)
        if as_json:
            for x in letters:
                console.print_json(
                    json.dumps(
                        {
                            "id": str(x.id),
                            "task": x.task_name,
                            "attempts": x.attempts,
                            "error": x.error,
                            "created_at": x.created_at.isoformat(),
                            "replayed_at": x.replayed_at.isoformat() if x.replayed_at else None,
                            "payload": x.payload,
                        }
                    ),
                    indent=None,  # one object per line, as --json promises
                )
            return
        table = Table(title=f"dead letters ({len(letters)})")
        for column in ("id", "task", "attempts", "error", "created", "replayed"):
            table.add_column(column)
        for x in letters:
            table.add_row(
                str(x.id),
                x.task_name,
                str(x.attempts),
                x.error[:60],
                x.created_at.strftime("%Y-%m-%d %H:%M"),
                x.replayed_at.strftime("%Y-%m-%d %H:%M") if x.replayed_at else "",
            )
        console.print(table)

    _with_database(go)


@dead_letters_app.command("replay")
def dead_letters_replay(
    letter_id: Annotated[uuid.UUID, typer.Argument(help="Dead letter id.")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant slug.")] = None,
) -> None:
    """Queue the job again with its original payload."""
    from leadrelay.core.clock import utcnow
    from leadrelay.ops.service import replay_dead_letter

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant) if tenant else None
        async with db.session(tenant_id) as session:
            letter = await replay_dead_letter(session, letter_id, actor=None, now=utcnow())
        console.print(f"[green]replayed[/] as job {letter.replay_job_id}")

    _with_database(go)


@api_keys_app.command("create")
def api_keys_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Option(help="What the key is for.")],
    role: Annotated[str, typer.Option(help="owner|admin|manager|reviewer|rep|operator")] = "admin",
    scope: Annotated[list[str] | None, typer.Option(help="Narrow to these permissions.")] = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from leadrelay.core.clock import utcnow
    from leadrelay.identity import service
    from leadrelay.identity.models import Role

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        async with db.session(tenant_id) as session:
            issued = await service.create_api_key(
                session,
                service.system_principal(tenant_id),
                name=name,
                role=Role(role),
                scopes=scope or [],
                now=utcnow(),
            )
        console.print(f"id: {issued.key.id}")
        console.print(f"key (shown once): [bold]{issued.token}[/]")

    _with_database(go)


@api_keys_app.command("revoke")
def api_keys_revoke(
    tenant: TenantOption, key_id: Annotated[uuid.UUID, typer.Argument(help="API key id.")]
) -> None:
    """Revoke an API key at once."""
    from leadrelay.core.clock import utcnow
    from leadrelay.identity import service

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        async with db.session(tenant_id) as session:
            await service.revoke_api_key(
                session, service.system_principal(tenant_id), key_id, now=utcnow()
            )
        console.print("[green]revoked[/]")

    _with_database(go)


@users_app.command("create")
def users_create(
    tenant: TenantOption,
    email: Annotated[str, typer.Option(help="Login e-mail.")],
    role: Annotated[str, typer.Option(help="owner|admin|manager|reviewer|rep|operator")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password: Annotated[
        str | None,
        typer.Option(
            help="Password (≥ 12 characters); prompted when omitted, or read from "
            "LEADRELAY_NEW_USER_PASSWORD."
        ),
    ] = None,
) -> None:
    """Create a console user in a tenant."""
    from leadrelay.core.clock import utcnow
    from leadrelay.identity import service
    from leadrelay.identity.models import Role

    secret = (
        password
        or os.environ.get("LEADRELAY_NEW_USER_PASSWORD")
        or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    )
    if len(secret) < 12:
        err.print("[red]the password needs at least 12 characters[/]")
        raise typer.Exit(2)

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        async with db.session(tenant_id) as session:
            user = await service.create_user(
                session,
                service.system_principal(tenant_id),
                email=email,
                name=name or email.split("@")[0],
                role=Role(role),
                password=secret,
                now=utcnow(),
            )
        console.print(f"[green]created[/] user {user.id}")

    _with_database(go)


async def _resolve_tenant(db: Database, tenant: str | None, source: str) -> uuid.UUID:
    """The --tenant slug, or the only tenant that has a source of this name."""
    from sqlalchemy import select

    from leadrelay.capture.models import Source
    from leadrelay.core.db import all_tenants

    if tenant is not None:
        return await _tenant_id(db, tenant)
    async with db.session() as session:
        tenants = await all_tenants(session)
    matches = []
    for slug, tenant_id in tenants.items():
        async with db.session(tenant_id) as session:
            if await session.scalar(select(Source.id).where(Source.name == source)):
                matches.append(slug)
    if len(matches) != 1:
        found = ", ".join(matches) or "none"
        err.print(
            f"[red]name the tenant with --tenant (tenants with source {source!r}: {found})[/]"
        )
        raise typer.Exit(2)
    return tenants[matches[0]]


@app.command("import")
def import_csv(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV file.")],
    source: Annotated[str, typer.Option(help="Registered, vetted source name.")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant slug.")] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="column=field, e.g. --map 'E-mail=email'.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and report only.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write one JSON object per input row here.")
    ] = None,
) -> None:
    """Import leads from a CSV file: streamed, every row reported, nothing dropped."""
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn, TransferSpeedColumn

    from leadrelay.capture.csv_import import run_import
    from leadrelay.core.errors import LeadRelayError
    from leadrelay.core.runtime import settle_process

    pairs: dict[str, str] = {}
    for item in mapping or []:
        column, sep, target = item.partition("=")
        if not sep or not column or not target:
            err.print(f"[red]--map expects column=field, got {item!r}[/]")
            raise typer.Exit(2)
        pairs[column.strip()] = target.strip()
    settings = _settings()
    urls = _prepare(settings, migrate=False)
    settle_process()  # an import is a long pipeline: the worker's start-up, not per chunk

    async def go() -> None:
        db = Database(urls)
        out = report.open("w", encoding="utf-8") if report else None
        try:
            tenant_id = await _resolve_tenant(db, tenant, source)
            columns = (
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=err, transient=False) as progress:
                task = progress.add_task(file.name, total=file.stat().st_size)
                summary = await run_import(
                    db,
                    tenant_id,
                    source_name=source,
                    path=file,
                    mapping=pairs,
                    dry_run=dry_run,
                    report=out,
                    progress=lambda n: progress.advance(task, n),
                )
            verb = "checked (dry run)" if dry_run else "imported"
            console.print(
                f"[green]{verb}[/] {summary.rows} rows: {summary.accepted} accepted, "
                f"{summary.duplicate} duplicates, {summary.rejected} rejected "
                f"(encoding {summary.encoding}, delimiter {summary.delimiter!r})"
            )
            if summary.ignored_columns:
                console.print(f"ignored columns: {', '.join(summary.ignored_columns)}")
            if summary.import_id:
                console.print(f"import id: {summary.import_id}")
        except LeadRelayError as error:
            err.print(f"[red]{error.detail}[/]")
            for item in error.errors:
                err.print(f"  {item.get('field')}: {item.get('message')}")
            raise typer.Exit(1) from None
        finally:
            if out is not None:
                out.close()
            await db.dispose()

    _run(go)


@app.command()
def dedup(
    tenant: TenantOption,
    chunk: Annotated[int, typer.Option(help="Leads matched per transaction.")] = 500,
) -> None:
    """Re-run fuzzy deduplication over every live lead of a tenant, with progress."""
    from sqlalchemy import func, select

    from leadrelay.capture.dedup import dedup_leads
    from leadrelay.capture.models import Lead, LeadStatus
    from leadrelay.core.clock import utcnow

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        async with db.session(tenant_id) as session:
            total = await session.scalar(select(func.count()).where(Lead.status == LeadStatus.NEW))
        merged = reviews = 0
        after: uuid.UUID | None = None
        with Progress(console=err) as progress:
            task = progress.add_task("matching", total=total or 0)
            while True:
                async with db.session(tenant_id) as session:
                    query = select(Lead.id).where(Lead.status == LeadStatus.NEW)
                    if after is not None:
                        query = query.where(Lead.id > after)
                    ids = list(await session.scalars(query.order_by(Lead.id).limit(chunk)))
                    if not ids:
                        break
                    report = await dedup_leads(
                        session, tenant_id, ids, now=utcnow(), actor_type="system"
                    )
                merged, reviews = merged + len(report.merged), reviews + report.reviews
                after = ids[-1]
                progress.advance(task, len(ids))
        console.print(f"[green]done[/]: {merged} merged, {reviews} pairs sent to review")

    _with_database(go)


@outcomes_app.command("import")
def outcomes_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: TenantOption,
    report: Annotated[
        Path | None, typer.Option(help="Write one JSON line per row (status, errors, lead).")
    ] = None,
) -> None:
    """Import a CSV of outcomes (outcome, closed_at, lead_id or email, amount, currency,
    external_id): matched to leads, idempotent, every rejected row reported with its line."""
    import json

    from leadrelay.core.clock import utcnow
    from leadrelay.crm.outcome_csv import OutcomeCsvRefused, parse_outcomes_csv
    from leadrelay.scoring.outcomes import record_outcomes

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        try:
            rows = list(parse_outcomes_csv(file))
        except OutcomeCsvRefused as error:
            err.print(f"[red]refused[/]: {error}")
            raise typer.Exit(1) from error
        counts = {"recorded": 0, "updated": 0, "unmatched": 0, "rejected": 0}
        lines: list[dict[str, object]] = []
        with Progress(console=err) as progress:
            task = progress.add_task("outcomes", total=len(rows))
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                good = [r for _, r, errors in chunk if r is not None and not errors]
                async with db.session(tenant_id) as session:
                    results = {
                        x.external_id: x
                        for x in await record_outcomes(session, tenant_id, good, now=utcnow())
                    }
                for line, record, errors in chunk:
                    if record is None or errors:
                        status, lead = "rejected", None
                    else:
                        result = results[record.external_id]
                        status = result.status if result.lead_id else "unmatched"
                        lead = str(result.lead_id) if result.lead_id else None
                    counts[status] += 1
                    lines.append(
                        {"line": line, "status": status, "errors": errors, "lead_id": lead}
                    )
                progress.advance(task, len(chunk))
        if report is not None:
            with report.open("w", encoding="utf-8") as handle:
                for item in lines:
                    handle.write(json.dumps(item) + "\n")
        console.print(", ".join(f"{n} {k}" for k, n in counts.items()))

    _with_database(go)


@export_app.command("leads")
def export_leads(
    tenant: TenantOption,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="File; standard output when omitted.")] = None,
) -> None:
    """Every lead with its normalized fields and all the external ids merged into it."""
    from leadrelay.capture import export

    if fmt not in {"jsonl", "csv"}:
        err.print("[red]--format must be jsonl or csv[/]")
        raise typer.Exit(2)
    settings = _settings()
    urls = _prepare(settings, migrate=False)

    async def go() -> None:
        db = Database(urls)
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            tenant_id = await _tenant_id(db, tenant)
            async with db.session(tenant_id) as session:
                if fmt == "csv":
                    out.write(export.csv_header())
                async for row in export.lead_rows(session):
                    out.write(export.as_csv(row) if fmt == "csv" else export.as_jsonl(row))
        finally:
            if output is not None:
                out.close()
            await db.dispose()

    _run(go)


def main() -> None:
    app()


@dnc_app.command("import")
def dnc_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: TenantOption,
    list_name: Annotated[str, typer.Option("--list", help="The registry's name.")],
    region: Annotated[
        str | None, typer.Option(help="Country (ISO 2) for numbers without +country.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write one JSON line per rejected line.")
    ] = None,
) -> None:
    """Import a do-not-call registry file (one number per line, or CSV with a `phone` column),
    streamed in one transaction with a progress bar; idempotent; rejected lines reported."""
    import codecs
    import json
    from collections.abc import Iterator

    from leadrelay.core.clock import utcnow
    from leadrelay.core.security import secret_keys
    from leadrelay.identity.service import system_principal
    from leadrelay.outreach.suppression import import_dnc

    settings = _settings()
    keys = secret_keys(settings)

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        with Progress(console=err) as progress, file.open("rb") as raw:
            task = progress.add_task(f"DNC {list_name}", total=file.stat().st_size)
            decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")

            def lines() -> Iterator[str]:
                for line in raw:
                    progress.advance(task, len(line))
                    yield decoder.decode(line)

            async with db.session(tenant_id) as session:
                result = await import_dnc(
                    session,
                    system_principal(tenant_id),
                    keys=keys,
                    list_name=list_name,
                    lines=lines(),
                    default_region=region.upper() if region else None,
                    now=utcnow(),
                )
        if report is not None:
            with report.open("w", encoding="utf-8") as out:
                for rejected in result.rejected:
                    out.write(json.dumps(rejected) + "\n")
        console.print(
            f"{list_name}: {result.rows:,} numbers read, {result.added:,} added, "
            f"{result.already_listed:,} already listed, {len(result.rejected):,} rejected"
        )

    _with_database(go)


# --- data-subject requests ---------------------------------------------------------------------

EmailOption = Annotated[str | None, typer.Option("--email", help="The person's e-mail address.")]
PhoneOption = Annotated[str | None, typer.Option("--phone", help="The person's phone number.")]
LeadOption = Annotated[str | None, typer.Option("--lead", help="One of the person's lead ids.")]
RegionOption = Annotated[
    str | None, typer.Option(help="Country (ISO 2) for a number without +country.")
]


def _dsar_subject(email: str | None, phone: str | None, lead: str | None) -> tuple[str, str]:
    named = [
        (kind, value)
        for kind, value in (("email", email), ("phone", phone), ("lead", lead))
        if value
    ]
    if len(named) != 1:
        err.print("[red]name the person with exactly one of --email, --phone, --lead[/]")
        raise typer.Exit(2)
    return named[0]


def _print_counts(title: str, counts: dict[str, int]) -> None:
    table = Table(title=title)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in sorted(counts.items()):
        table.add_row(name, f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{sum(counts.values()):,}[/]")
    console.print(table)


@dsar_app.command("export")
def dsar_export(
    tenant: TenantOption,
    out: Annotated[Path, typer.Option("--out", help="The ZIP file to write.", dir_okay=False)],
    email: EmailOption = None,
    phone: PhoneOption = None,
    lead: LeadOption = None,
    region: RegionOption = None,
) -> None:
    """Everything held about one person as a ZIP (JSON and CSV per table, a manifest): the
    request is recorded, completed and audited."""
    from leadrelay.compliance import dsar
    from leadrelay.core.clock import utcnow
    from leadrelay.core.security import secret_keys
    from leadrelay.identity.service import system_principal

    kind, subject = _dsar_subject(email, phone, lead)
    keys = secret_keys(_settings())

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        actor = system_principal(tenant_id)
        async with db.session(tenant_id) as session:
            request = await dsar.open_request(
                session,
                actor,
                keys=keys,
                kind=dsar.DsarKind.EXPORT,
                subject_kind=dsar.SubjectKind(kind),
                subject=subject,
                default_region=region.upper() if region else None,
                note="leadrelay dsar export",
                now=utcnow(),
            )
            export = await dsar.export_request(session, actor, request.id, keys=keys, now=utcnow())
        out.write_bytes(export.content)
        _print_counts(f"DSAR export {request.id}", export.counts)
        console.print(f"wrote {out} ({len(export.content):,} bytes, sha256 {export.sha256})")

    _with_database(go)


@dsar_app.command("erase")
def dsar_erase(
    tenant: TenantOption,
    email: EmailOption = None,
    phone: PhoneOption = None,
    lead: LeadOption = None,
    region: RegionOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Erase (without it: only show what).")] = False,
) -> None:
    """Erase one person everywhere in one transaction, keeping the keyed-hash suppression of
    their addresses; prints the purge summary. Without --yes, shows what would go and stops."""
    from leadrelay.compliance import dsar
    from leadrelay.core.clock import utcnow
    from leadrelay.core.security import secret_keys
    from leadrelay.identity.service import system_principal

    kind, subject = _dsar_subject(email, phone, lead)
    keys = secret_keys(_settings())

    async def go(db: Database) -> None:
        tenant_id = await _tenant_id(db, tenant)
        actor = system_principal(tenant_id)
        subject_kind = dsar.SubjectKind(kind)
        default_region = region.upper() if region else None
        if not yes:
            normalized = dsar.check_subject(subject_kind, subject, default_region=default_region)
            async with db.session(tenant_id) as session:
                counts = await dsar.preview(session, tenant_id, subject_kind, normalized)
            _print_counts("would erase (nothing changed)", counts)
            err.print("[yellow]pass --yes to erase[/]")
            raise typer.Exit(1)
        async with db.session(tenant_id) as session:
            request = await dsar.open_request(
                session,
                actor,
                keys=keys,
                kind=dsar.DsarKind.ERASURE,
                subject_kind=subject_kind,
                subject=subject,
                default_region=default_region,
                note="leadrelay dsar erase",
                now=utcnow(),
            )
            summary = await dsar.erase_request(
                session,
                actor,
                request.id,
                keys=keys,
                confirmation=dsar.confirmation_phrase(request),
                now=utcnow(),
            )
        _print_counts(f"erased (request {request.id})", summary.deleted)
        kept = ", ".join(f"{n} {k}" for k, n in summary.suppressed.items()) or "none"
        console.print(f"suppressions kept (keyed hashes): {kept}")

    _with_database(go)
