"""Dead letters: jobs that failed their last try, and replaying them."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from leadrelay.console.auth import ReplayDeadLetters, ViewDeadLetters
from leadrelay.console.rendering import Notice, is_htmx, render
from leadrelay.core.clock import utcnow
from leadrelay.identity.permissions import Permission
from leadrelay.ops import service as ops

router = APIRouter(prefix="/console/dead-letters")


@router.get("")
async def dead_letters_page(request: Request, console: ViewDeadLetters) -> Response:
    letters = await ops.list_dead_letters(console.session)
    return render(
        request,
        "dead_letters/page.html",
        {
            "letters": letters,
            "waiting": sum(1 for letter in letters if letter.replayed_at is None),
            "can_replay": console.can(Permission.DEAD_LETTERS_REPLAY),
        },
    )


@router.post("/{letter_id}/replay")
async def replay(request: Request, console: ReplayDeadLetters, letter_id: uuid.UUID) -> Response:
    letter = await ops.replay_dead_letter(
        console.session, letter_id, actor=console.principal, now=utcnow()
    )
    if is_htmx(request):
        return render(request, "dead_letters/_row.html", {"letter": letter, "can_replay": True})
    letters = await ops.list_dead_letters(console.session)
    return render(
        request,
        "dead_letters/page.html",
        {
            "letters": letters,
            "waiting": sum(1 for item in letters if item.replayed_at is None),
            "can_replay": True,
            "notices": [Notice("success", f"{letter.task_name} was queued again.")],
        },
    )
