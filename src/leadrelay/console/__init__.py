"""The server-rendered console (Jinja2 + htmx)."""

from __future__ import annotations

from fastapi import FastAPI


def mount_console(app: FastAPI) -> None:
    from leadrelay.console.pages import router, static_files

    app.mount("/static", static_files(), name="static")
    app.include_router(router)
