"""``bigupload storage``: set the S3 bucket up for bigupload, and check it.

Both read the bucket named by the settings (``BIGUPLOAD_STORAGE=s3``); options override the
``BIGUPLOAD_S3_*`` settings that say what the bucket should have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from bigupload.cli.common import fail, settings_or_exit

if TYPE_CHECKING:
    from bigupload.config import Settings
    from bigupload.storage.s3.setup import Desired, Section

app = typer.Typer(help="The S3 bucket: set it up for bigupload, check it.", no_args_is_help=True)

Origins = Annotated[
    list[str] | None,
    typer.Option(
        "--origin",
        help="An origin whose pages upload to the bucket (repeat for more) "
        "(default: BIGUPLOAD_S3_CORS_ORIGINS, else the service's own and BIGUPLOAD_CORS_ORIGINS)",
        show_default=False,
    ),
]
AbortDays = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=3650,
        help="Days after which unfinished multipart uploads are aborted "
        "(default: BIGUPLOAD_S3_ABORT_INCOMPLETE_DAYS, 7)",
        show_default=False,
    ),
]
QueueArn = Annotated[
    str | None,
    typer.Option(
        help="Send s3:ObjectCreated:* under uploads/ to this SQS queue "
        "(default: BIGUPLOAD_S3_EVENTS_QUEUE_ARN)",
        show_default=False,
    ),
]
TopicArn = Annotated[
    str | None,
    typer.Option(
        help="Send s3:ObjectCreated:* under uploads/ to this SNS topic "
        "(default: BIGUPLOAD_S3_EVENTS_TOPIC_ARN)",
        show_default=False,
    ),
]
Encryption = Annotated[
    str | None,
    typer.Option(
        help="Default encryption: sse-s3 or sse-kms (default: BIGUPLOAD_S3_DEFAULT_ENCRYPTION, "
        "none: left as it is)",
        show_default=False,
    ),
]
KmsKey = Annotated[
    str | None,
    typer.Option(
        help="The KMS key for sse-kms (default: BIGUPLOAD_S3_KMS_KEY_ID, else AWS's managed key)",
        show_default=False,
    ),
]


def _settings(**options: Any) -> Settings:
    overrides = {
        "s3_cors_origins": tuple(options["origin"]) if options["origin"] else None,
        "s3_abort_incomplete_days": options["abort_after_days"],
        "s3_events_queue_arn": options["sqs_queue_arn"],
        "s3_events_topic_arn": options["sns_topic_arn"],
        "s3_default_encryption": options["encryption"],
        "s3_kms_key_id": options["kms_key_id"],
    }
    return settings_or_exit(**overrides)


def _inspect(settings: Settings) -> tuple[Any, Desired, list[Section]]:
    from bigupload.storage.s3 import build_client
    from bigupload.storage.s3.setup import Desired, SetupError, inspect

    if settings.storage != "s3":
        typer.echo("the local store needs no set-up: nothing to do (BIGUPLOAD_STORAGE=local)")
        raise typer.Exit(0)
    assert settings.s3_bucket is not None
    client = build_client(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        addressing_style=settings.s3_addressing_style,
        max_pool_connections=2,
    )
    desired = Desired.from_settings(settings)
    try:
        return client, desired, inspect(client, settings.s3_bucket, desired)
    except SetupError as exc:
        fail(str(exc))


def _report(sections: list[Section], mode: Literal["setup", "dry-run", "check"]) -> None:
    for section in sections:
        if section.skipped:
            typer.echo(f"{section.name}: skipped: {section.skipped}")
        elif section.error:
            typer.echo(f"{section.name}: {section.error}")
        elif not section.changed:
            typer.echo(f"{section.name}: {'ok' if mode == 'check' else 'already set up'}")
        elif mode == "check":
            for problem in section.problems:
                typer.echo(f"{section.name}: {problem}")
        else:
            verb = "would be set up" if mode == "dry-run" else "set up"
            kept = f", keeping {section.kept} of others'" if section.kept else ""
            typer.echo(f"{section.name}: {verb}{kept} (was: {'; '.join(section.problems)})")
            if mode == "dry-run":
                typer.echo(section.diff())


@app.command("setup")
def setup(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change (a diff); change nothing.")
    ] = False,
    origin: Origins = None,
    abort_after_days: AbortDays = None,
    sqs_queue_arn: QueueArn = None,
    sns_topic_arn: TopicArn = None,
    encryption: Encryption = None,
    kms_key_id: KmsKey = None,
) -> None:
    """Configure the bucket: CORS for the upload pages, a lifecycle rule aborting unfinished
    uploads, and (if asked) event notifications and default encryption. Others' rules are kept;
    a second run changes nothing."""
    from bigupload.storage.s3.setup import apply

    settings = _settings(**locals())
    client, _, sections = _inspect(settings)
    bucket = settings.s3_bucket or ""
    changes = [s for s in sections if s.changed and not s.error]
    if dry_run:
        _report(sections, "dry-run")
        if changes:
            typer.echo(f"bucket {bucket}: would change {len(changes)} of its settings (dry run)")
        else:
            typer.echo(f"bucket {bucket}: already set up")
        raise typer.Exit(1 if any(s.error for s in sections) else 0)
    if changes:
        apply(client, bucket, changes)
    _report(sections, "setup")
    if any(s.error for s in sections):
        fail(f"bucket {bucket}: not fully set up (see above)")
    if changes:
        typer.echo(f"bucket {bucket}: set up ({len(changes)} of its settings changed)")
    else:
        typer.echo(f"bucket {bucket}: already set up")


@app.command("check")
def check(
    origin: Origins = None,
    abort_after_days: AbortDays = None,
    sqs_queue_arn: QueueArn = None,
    sns_topic_arn: TopicArn = None,
    encryption: Encryption = None,
    kms_key_id: KmsKey = None,
) -> None:
    """Read the bucket and name each setting bigupload needs that is missing or wrong; exit 1 if
    any (``bigupload storage setup`` fixes them)."""
    settings = _settings(**locals())
    _, _, sections = _inspect(settings)
    _report(sections, "check")
    problems = sum(len(s.problems) for s in sections if s.changed or s.error)
    if problems:
        typer.echo(
            f"bucket {settings.s3_bucket}: {problems} problem{'s' if problems > 1 else ''}; "
            "`bigupload storage setup` fixes them"
        )
        raise typer.Exit(1)
    typer.echo(f"bucket {settings.s3_bucket}: set up for bigupload")
