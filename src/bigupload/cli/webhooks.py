"""``bigupload webhooks``: the operator's view of webhook deliveries (every owner's), and replay.

Reads and writes the registry named by the settings, as ``bigupload keys`` does; no server needs
to run. A replayed delivery is sent by whichever process runs jobs.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bigupload.cli.common import fail, settings_or_exit
from bigupload.notifications.delivery_status import DeliveryStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bigupload.jobs.models import Job

app = typer.Typer(help="Webhook deliveries: list them, replay one.", no_args_is_help=True)

_COLUMNS = ("id", "status", "event", "owner", "attempts", "code", "endpoint", "created", "error")


def _row(job: Job) -> dict[str, Any]:
    from bigupload.notifications import webhooks

    document = job.payload.get("document")
    status_code = (job.result or {}).get("status_code")
    return {
        "id": job.id,
        "status": webhooks.delivery_status(job).value,
        "webhook_id": job.payload.get("webhook_id"),
        "event_type": document.get("type") if isinstance(document, dict) else None,
        "owner": job.owner,
        "file_id": str(job.file_id) if job.file_id else None,
        "endpoint": job.payload.get("endpoint"),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_status_code": status_code if isinstance(status_code, int) else None,
        "last_error": job.last_error,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def _cells(row: dict[str, Any]) -> list[str]:
    values = (
        row["id"],
        row["status"],
        row["event_type"],
        row["owner"],
        f"{row['attempts']}/{row['max_attempts']}",
        row["last_status_code"],
        row["endpoint"],
        row["created_at"][:19],
        (row["last_error"] or "").replace("\n", " "),
    )
    return ["" if value is None else str(value) for value in values]


@app.command("deliveries")
def deliveries(
    status: Annotated[
        DeliveryStatus | None,
        typer.Option(help="Only deliveries in this state.", show_default=False),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Only this owner's deliveries.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Deliveries at most.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List webhook deliveries of every owner, newest first: a table on a terminal, else one
    tab-separated line each (id, status, event, owner, attempts, code, endpoint, created, error)."""
    from bigupload.cli.registry import run_with_session
    from bigupload.notifications import webhooks

    settings = settings_or_exit()

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        rows, _ = await webhooks.list_deliveries(session, owner=owner, limit=limit, status=status)
        return [_row(job) for job in rows]

    rows = run_with_session(settings, work)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*_COLUMNS)
        for row in rows:
            table.add_row(*_cells(row))
        Console().print(table)
        return
    for row in rows:
        typer.echo("\t".join(_cells(row)))


@app.command("replay")
def replay(
    delivery_id: Annotated[int, typer.Argument(min=1, help="The delivery's id.")],
) -> None:
    """Queue a delivery again (same document, same webhook-id); print the new delivery's id."""
    from bigupload.cli.registry import run_with_session
    from bigupload.notifications import webhooks

    settings = settings_or_exit()

    async def work(session: AsyncSession) -> int:
        job = await webhooks.get_delivery(session, delivery_id, owner=None)
        if job is None:
            fail(f"no webhook delivery {delivery_id}")
        try:
            replayed = await webhooks.replay(session, job, settings)
        except webhooks.ReplayRefused as exc:
            fail(exc.message)
        return replayed.id

    new_id = run_with_session(settings, work)
    typer.echo(new_id)
    typer.echo(f"delivery {delivery_id} queued again as {new_id}", err=True)
