"""Console pages (placeholder until the console shell lands)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR, check_dir=False)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/console", status_code=303)
