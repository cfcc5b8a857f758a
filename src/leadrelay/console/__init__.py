"""The server-rendered console (Jinja2 + htmx)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response


def body_limits() -> dict[str, int]:
    """Console routes that take file uploads, and the largest body each accepts."""
    from leadrelay.console.imports import UPLOAD_BODY_LIMIT, UPLOAD_PATH
    from leadrelay.console.suppressions import DNC_UPLOAD_BODY_LIMIT, DNC_UPLOAD_PATH

    return {UPLOAD_PATH: UPLOAD_BODY_LIMIT, DNC_UPLOAD_PATH: DNC_UPLOAD_BODY_LIMIT}


def mount_console(app: FastAPI) -> None:
    from leadrelay.console.errors import ConsoleProblem, LoginRequired
    from leadrelay.console.imports import UploadTasks
    from leadrelay.console.pages import router, static_files
    from leadrelay.console.rendering import redirect_to_login, render_problem

    async def on_problem(request: Request, error: Exception) -> Response:
        if not isinstance(error, ConsoleProblem):  # registered for this class only
            raise error
        return render_problem(request, error)

    async def on_login_required(request: Request, error: Exception) -> Response:
        if not isinstance(error, LoginRequired):  # registered for this class only
            raise error
        return redirect_to_login(request, error)

    app.state.console_uploads = UploadTasks()  # CSV imports running in this process
    app.add_exception_handler(ConsoleProblem, on_problem)
    app.add_exception_handler(LoginRequired, on_login_required)
    app.mount("/static", static_files(), name="static")
    app.include_router(router)
