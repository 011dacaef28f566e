"""The bucket settings bigupload relies on: what they should be, what they are, and the change.

Four parts of a bucket's configuration, each read, compared and written on its own:

- CORS: one rule (ID ``bigupload-uploads``) letting the upload pages' origins PUT, POST, GET and
  HEAD, and read ``ETag``, ``Location`` and the checksum headers;
- lifecycle: one rule (ID ``bigupload-abort-incomplete-uploads``) aborting multipart uploads left
  unfinished under ``uploads/``;
- event notifications (when a queue or topic is configured): ``s3:ObjectCreated:*`` under
  ``uploads/`` to it (ID ``bigupload-object-created``);
- default encryption (when asked for): SSE-S3 or SSE-KMS.

Rules and notifications of others are kept as they are; ours are found by their ID. The planning
functions are pure (configuration in, configuration and plain-word problems out); :func:`inspect`
reads a bucket and :func:`apply` writes what changed.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from bigupload.config import Settings

CORS_RULE_ID = "bigupload-uploads"
LIFECYCLE_RULE_ID = "bigupload-abort-incomplete-uploads"
NOTIFICATION_ID = "bigupload-object-created"
UPLOAD_PREFIX = "uploads/"
CORS_METHODS = ("PUT", "POST", "GET", "HEAD")
CORS_EXPOSE = (
    "ETag",
    "Location",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-checksum-type",
)
CORS_MAX_AGE = 3000
OBJECT_CREATED = "s3:ObjectCreated:*"
SSE_ALGORITHMS = {"sse-s3": "AES256", "sse-kms": "aws:kms"}

#: Error codes meaning "this store has no such configuration yet".
_ABSENT = {
    "cors": {"NoSuchCORSConfiguration"},
    "lifecycle": {"NoSuchLifecycleConfiguration"},
    "notifications": set(),
    "encryption": {"ServerSideEncryptionConfigurationNotFoundError"},
}
#: Error codes meaning "this store does not have that API".
_UNSUPPORTED = {"NotImplemented", "501", "MethodNotAllowed", "XNotImplemented"}


_NAMES = {
    "cors": "CORS",
    "lifecycle": "lifecycle",
    "notifications": "event notifications",
    "encryption": "default encryption",
}


class SetupError(Exception):
    """The bucket cannot be read at all (missing, unreachable, no credentials)."""


@dataclass(frozen=True)
class Desired:
    """What bigupload wants of its bucket."""

    origins: tuple[str, ...]
    abort_after_days: int = 7
    queue_arn: str | None = None
    topic_arn: str | None = None
    encryption: Literal["sse-s3", "sse-kms"] | None = None
    kms_key_id: str | None = None
    prefix: str = UPLOAD_PREFIX

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Desired:
        values: dict[str, Any] = {
            "origins": settings.s3_cors_origins or page_origins(settings),
            "abort_after_days": settings.s3_abort_incomplete_days,
            "queue_arn": settings.s3_events_queue_arn,
            "topic_arn": settings.s3_events_topic_arn,
            "encryption": settings.s3_default_encryption,
            "kms_key_id": settings.s3_kms_key_id,
        }
        values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
        return cls(**values)


def page_origins(settings: Settings) -> tuple[str, ...]:
    """The origins whose pages can get upload URLs: the service's own page, and CORS_ORIGINS."""
    parts = urlsplit(settings.effective_public_url)
    own = f"{parts.scheme}://{parts.netloc}"
    return tuple(dict.fromkeys((own, *settings.cors_origins)))


@dataclass
class Section:
    """One part of the bucket's configuration: as it is, as it should be, and what is wrong."""

    key: Literal["cors", "lifecycle", "notifications", "encryption"]
    #: What to call ``put_*`` with; ``None``: nothing to write.
    current: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    #: Why this part is not looked at (not asked for), or cannot be (the store lacks the API).
    skipped: str | None = None
    unsupported: bool = False
    error: str | None = None
    kept: int = 0
    #: Other arguments of ``put_*`` that keep what the bucket has (lifecycle's
    #: TransitionDefaultMinimumObjectSize, which a put without it resets).
    put_args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return _NAMES[self.key]

    @property
    def changed(self) -> bool:
        return self.new is not None

    def diff(self) -> str:
        before = _dump(self.current)
        after = _dump(self.new if self.new is not None else self.current)
        lines = difflib.unified_diff(
            before, after, f"{self.name} (now)", f"{self.name} (after setup)", lineterm=""
        )
        return "\n".join(lines)


def _dump(config: dict[str, Any] | None) -> list[str]:
    if not config:
        return []
    return json.dumps(config, indent=2, sort_keys=True).splitlines()


# -- CORS -------------------------------------------------------------------------------------


def cors_rule(desired: Desired) -> dict[str, Any]:
    return {
        "ID": CORS_RULE_ID,
        "AllowedOrigins": list(desired.origins),
        "AllowedMethods": list(CORS_METHODS),
        "AllowedHeaders": ["*"],
        "ExposeHeaders": list(CORS_EXPOSE),
        "MaxAgeSeconds": CORS_MAX_AGE,
    }


def _lower(values: Iterable[str]) -> set[str]:
    return {value.lower() for value in values}


def cors_problems(rule: dict[str, Any] | None, desired: Desired) -> list[str]:
    if rule is None:
        return [
            f"the bucket has no CORS rule {CORS_RULE_ID}: browsers on "
            f"{', '.join(desired.origins)} cannot upload to it"
        ]
    problems = []
    origins = set(rule.get("AllowedOrigins", []))
    for origin in desired.origins:
        if origin not in origins:
            problems.append(f"the CORS rule {CORS_RULE_ID} does not allow the origin {origin}")
    for origin in sorted(origins - set(desired.origins)):
        problems.append(f"the CORS rule {CORS_RULE_ID} allows the origin {origin}, not configured")
    methods = _lower(rule.get("AllowedMethods", []))
    for method in CORS_METHODS:
        if method.lower() not in methods:
            problems.append(f"the CORS rule {CORS_RULE_ID} does not allow the method {method}")
    if "*" not in rule.get("AllowedHeaders", []):
        problems.append(f"the CORS rule {CORS_RULE_ID} does not allow every request header (*)")
    exposed = _lower(rule.get("ExposeHeaders", []))
    for header in CORS_EXPOSE:
        if header.lower() not in exposed:
            problems.append(f"the CORS rule {CORS_RULE_ID} does not expose the header {header}")
    return problems


def plan_cors(current: dict[str, Any] | None, desired: Desired) -> Section:
    rules = list((current or {}).get("CORSRules", []))
    ours = next((rule for rule in rules if rule.get("ID") == CORS_RULE_ID), None)
    others = [rule for rule in rules if rule.get("ID") != CORS_RULE_ID]
    section = Section("cors", current=current, kept=len(others))
    section.problems = cors_problems(ours, desired)
    # A browser's preflight takes the first rule matching its origin and method: none of the
    # rules before ours may match our origins, and a new rule of ours goes first.
    shadows = []
    for rule in rules:
        if rule is ours:
            break
        allowed = set(rule.get("AllowedOrigins", []))
        if "*" in allowed or allowed & set(desired.origins):
            shadows.append(rule.get("ID") or f"number {rules.index(rule) + 1}")
    if shadows and ours is not None:
        section.problems.append(
            f"the CORS rule {', '.join(map(str, shadows))} comes before {CORS_RULE_ID} for the "
            "same origins, so browsers get its answer instead"
        )
    if section.problems:
        section.new = {"CORSRules": [cors_rule(desired), *others]}
    return section


# -- lifecycle --------------------------------------------------------------------------------


def lifecycle_rule(desired: Desired) -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": desired.prefix},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": desired.abort_after_days},
    }


def _rule_prefix(rule: dict[str, Any]) -> str | None:
    if "Prefix" in rule:
        return str(rule["Prefix"])
    rule_filter = rule.get("Filter") or {}
    if "Prefix" in rule_filter:
        return str(rule_filter["Prefix"])
    if "And" in rule_filter and "Prefix" in rule_filter["And"]:
        return str(rule_filter["And"]["Prefix"])
    return "" if not rule_filter else None


def lifecycle_problems(rule: dict[str, Any] | None, desired: Desired) -> list[str]:
    if rule is None:
        return [
            f"the bucket has no lifecycle rule {LIFECYCLE_RULE_ID}: parts of uploads nobody "
            f"finishes under {desired.prefix} are kept (and paid for) until aborted by hand"
        ]
    problems = []
    if rule.get("Status") != "Enabled":
        problems.append(f"the lifecycle rule {LIFECYCLE_RULE_ID} is disabled")
    prefix = _rule_prefix(rule)
    if prefix != desired.prefix:
        shown = "a filter other than a prefix" if prefix is None else f"the prefix {prefix!r}"
        problems.append(
            f"the lifecycle rule {LIFECYCLE_RULE_ID} applies to {shown}, "
            f"not the prefix {desired.prefix!r}"
        )
    days = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
    if days is None:
        problems.append(
            f"the lifecycle rule {LIFECYCLE_RULE_ID} does not abort incomplete multipart uploads"
        )
    elif days != desired.abort_after_days:
        problems.append(
            f"the lifecycle rule {LIFECYCLE_RULE_ID} aborts incomplete multipart uploads after "
            f"{days} days, not {desired.abort_after_days}"
        )
    return problems


def plan_lifecycle(current: dict[str, Any] | None, desired: Desired) -> Section:
    rules = list((current or {}).get("Rules", []))
    ours = next((rule for rule in rules if rule.get("ID") == LIFECYCLE_RULE_ID), None)
    others = [rule for rule in rules if rule.get("ID") != LIFECYCLE_RULE_ID]
    section = Section("lifecycle", current=current, kept=len(others))
    section.problems = lifecycle_problems(ours, desired)
    if section.problems:
        section.new = {"Rules": [*others, lifecycle_rule(desired)]}
    return section


# -- event notifications ----------------------------------------------------------------------

_NOTIFICATION_LISTS = {
    "QueueConfigurations": "QueueArn",
    "TopicConfigurations": "TopicArn",
    "LambdaFunctionConfigurations": "LambdaFunctionArn",
}


def notification(desired: Desired) -> tuple[str, dict[str, Any]]:
    """Which list our configuration goes in, and the configuration."""
    if desired.queue_arn:
        list_name, arn_key, arn = "QueueConfigurations", "QueueArn", desired.queue_arn
    else:
        assert desired.topic_arn
        list_name, arn_key, arn = "TopicConfigurations", "TopicArn", desired.topic_arn
    return list_name, {
        "Id": NOTIFICATION_ID,
        arn_key: arn,
        "Events": [OBJECT_CREATED],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": desired.prefix}]}},
    }


def _filter_rules(config: dict[str, Any]) -> dict[str, str]:
    rules = ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    return {str(rule.get("Name", "")).lower(): str(rule.get("Value", "")) for rule in rules}


def notification_problems(found: tuple[str, dict[str, Any]] | None, desired: Desired) -> list[str]:
    list_name, wanted = notification(desired)
    arn_key = _NOTIFICATION_LISTS[list_name]
    target = f"{'queue' if list_name == 'QueueConfigurations' else 'topic'} {wanted[arn_key]}"
    if found is None:
        return [
            f"the bucket sends no {OBJECT_CREATED} events under {desired.prefix} to the {target}"
            f" (notification {NOTIFICATION_ID})"
        ]
    found_list, config = found
    problems = []
    if found_list != list_name or config.get(arn_key) != wanted[arn_key]:
        where = next(
            (config[key] for key in _NOTIFICATION_LISTS.values() if key in config), "elsewhere"
        )
        problems.append(
            f"the notification {NOTIFICATION_ID} sends events to {where}, not the {target}"
        )
    events = set(config.get("Events", []))
    if OBJECT_CREATED not in events:
        problems.append(f"the notification {NOTIFICATION_ID} does not send {OBJECT_CREATED}")
    rules = _filter_rules(config)
    if rules != {"prefix": desired.prefix}:
        problems.append(
            f"the notification {NOTIFICATION_ID} does not filter on exactly the prefix "
            f"{desired.prefix!r}"
        )
    return problems


def plan_notifications(current: dict[str, Any] | None, desired: Desired) -> Section:
    if not (desired.queue_arn or desired.topic_arn):
        return Section(
            "notifications",
            skipped="not asked for (no queue or topic ARN configured)",
        )
    config = {k: v for k, v in (current or {}).items() if k != "ResponseMetadata"}
    found = None
    others = {}
    kept = 0
    for list_name in (*_NOTIFICATION_LISTS, "EventBridgeConfiguration"):
        if list_name not in config:
            continue
        if list_name == "EventBridgeConfiguration":
            others[list_name] = config[list_name]
            kept += 1
            continue
        entries = []
        for entry in config[list_name]:
            if entry.get("Id") == NOTIFICATION_ID:
                found = (list_name, entry)
            else:
                entries.append(entry)
        if entries:
            others[list_name] = entries
            kept += len(entries)
    section = Section("notifications", current=config, kept=kept)
    section.problems = notification_problems(found, desired)
    if section.problems:
        list_name, wanted = notification(desired)
        new = dict(others)
        new[list_name] = [*new.get(list_name, []), wanted]
        section.new = new
    return section


# -- default encryption -----------------------------------------------------------------------


def encryption_config(desired: Desired) -> dict[str, Any]:
    assert desired.encryption
    default: dict[str, Any] = {"SSEAlgorithm": SSE_ALGORITHMS[desired.encryption]}
    if desired.encryption == "sse-kms" and desired.kms_key_id:
        default["KMSMasterKeyID"] = desired.kms_key_id
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": default}]}


def encryption_problems(current: dict[str, Any] | None, desired: Desired) -> list[str]:
    assert desired.encryption
    wanted = SSE_ALGORITHMS[desired.encryption]
    rules = (current or {}).get("Rules") or []
    default = (rules[0].get("ApplyServerSideEncryptionByDefault") or {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")
    label = desired.encryption.upper()
    if algorithm is None:
        return [f"the bucket has no default encryption (wanted: {label})"]
    if algorithm != wanted:
        return [f"the bucket's default encryption is {algorithm}, not {label} ({wanted})"]
    key = default.get("KMSMasterKeyID")
    if desired.encryption == "sse-kms" and desired.kms_key_id and key != desired.kms_key_id:
        return [
            f"the bucket's default encryption uses the KMS key {key or '(the AWS managed key)'}, "
            f"not {desired.kms_key_id}"
        ]
    return []


def plan_encryption(current: dict[str, Any] | None, desired: Desired) -> Section:
    if desired.encryption is None:
        return Section("encryption", skipped="not asked for")
    section = Section("encryption", current=current)
    section.problems = encryption_problems(current, desired)
    if section.problems:
        section.new = encryption_config(desired)
    return section


# -- reading and writing the bucket -----------------------------------------------------------

#: (section key, planner, reader, reader's answer key, writer, writer's argument name)
_PARTS: tuple[tuple[str, Callable[..., Section], str, str | None, str, str], ...] = (
    ("cors", plan_cors, "get_bucket_cors", None, "put_bucket_cors", "CORSConfiguration"),
    (
        "lifecycle",
        plan_lifecycle,
        "get_bucket_lifecycle_configuration",
        None,
        "put_bucket_lifecycle_configuration",
        "LifecycleConfiguration",
    ),
    (
        "notifications",
        plan_notifications,
        "get_bucket_notification_configuration",
        None,
        "put_bucket_notification_configuration",
        "NotificationConfiguration",
    ),
    (
        "encryption",
        plan_encryption,
        "get_bucket_encryption",
        "ServerSideEncryptionConfiguration",
        "put_bucket_encryption",
        "ServerSideEncryptionConfiguration",
    ),
)
_KEEP = {
    "cors": ("CORSRules",),
    "lifecycle": ("Rules",),
    "notifications": (*_NOTIFICATION_LISTS, "EventBridgeConfiguration"),
    "encryption": ("Rules",),
}


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.get("Code", ""))
    return "NotImplemented" if status == 501 and not code else code


def _message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).strip()
    return f"{_code(exc)}: {message}" if message else _code(exc)


def inspect(client: Any, bucket: str, desired: Desired) -> list[Section]:
    """Read the bucket's configuration and plan each part (blocking: call from a thread)."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = _code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise SetupError(f"the bucket {bucket!r} does not exist") from exc
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise SetupError(
                f"S3 refused the credentials for the bucket {bucket!r} ({code})"
            ) from exc
        raise SetupError(f"cannot read the bucket {bucket!r}: {_message(exc)}") from exc
    except BotoCoreError as exc:
        raise SetupError(f"S3 is unreachable: {type(exc).__name__} ({exc})") from exc
    sections = []
    for key, planner, reader, answer_key, _, _ in _PARTS:
        probe = planner(None, desired)
        if probe.skipped:
            sections.append(probe)
            continue
        probe.new = None
        try:
            answer = getattr(client, reader)(Bucket=bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in _ABSENT[key]:
                sections.append(planner(None, desired))
            elif code in _UNSUPPORTED:
                probe.skipped = f"the store does not implement {_api(reader)}"
                probe.unsupported = True
                probe.problems = []
                sections.append(probe)
            else:
                probe.problems = [f"cannot read the bucket's {probe.name}: {_message(exc)}"]
                probe.error = probe.problems[0]
                sections.append(probe)
            continue
        except BotoCoreError as exc:
            raise SetupError(f"S3 is unreachable: {type(exc).__name__} ({exc})") from exc
        if answer_key:
            answer = answer.get(answer_key) or {}
        current = {k: v for k, v in answer.items() if k in _KEEP[key]}
        section = planner(current, desired)
        if key == "lifecycle" and answer.get("TransitionDefaultMinimumObjectSize"):
            section.put_args["TransitionDefaultMinimumObjectSize"] = answer[
                "TransitionDefaultMinimumObjectSize"
            ]
        sections.append(section)
    return sections


def _api(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def apply(client: Any, bucket: str, sections: list[Section]) -> None:
    """Write each changed part; a part the store refuses gets its ``error`` (the rest go on)."""
    writers = {key: (writer, argument) for key, _, _, _, writer, argument in _PARTS}
    for section in sections:
        if not section.changed or section.error:
            continue
        writer, argument = writers[section.key]
        try:
            getattr(client, writer)(Bucket=bucket, **{argument: section.new}, **section.put_args)
        except ClientError as exc:
            if _code(exc) in _UNSUPPORTED:
                section.skipped = f"the store does not implement {_api(writer)}"
                section.unsupported = True
                section.new = None
            else:
                section.error = f"the store refused the new {section.name}: {_message(exc)}"
        except BotoCoreError as exc:
            section.error = f"cannot write the bucket's {section.name}: {exc}"


#: Start-up waits this long at most for the bucket's answers before going on without them.
STARTUP_CHECK_SECONDS = 5.0


@dataclass
class StartupCheck:
    #: Why the store cannot be used at all (unreachable, no bucket, refused credentials).
    unusable: str | None = None
    #: Each problem of the bucket's configuration, in plain words.
    problems: list[str] = field(default_factory=list)


async def startup_check(
    client: Any, bucket: str, settings: Settings, *, seconds: float = STARTUP_CHECK_SECONDS
) -> StartupCheck:
    """What ``serve`` warns of at start, within ``seconds`` whatever the store does. Past them
    start-up goes on; the calls' thread is left to end on the client's own timeouts."""
    import asyncio

    import anyio

    desired = Desired.from_settings(settings)
    try:
        async with asyncio.timeout(seconds):
            sections = await anyio.to_thread.run_sync(
                inspect, client, bucket, desired, abandon_on_cancel=True
            )
    except TimeoutError:
        return StartupCheck(f"S3 is unreachable: no answer within {seconds:g} s")
    except SetupError as exc:
        return StartupCheck(str(exc))
    result = StartupCheck()
    for section in sections:
        if section.unsupported:
            result.problems.append(f"{section.name} not checked: {section.skipped}")
        elif section.changed or section.error:
            result.problems.extend(f"{section.name}: {problem}" for problem in section.problems)
    return result
