"""Every metric bigupload exports, named ``bigupload_*``, with bounded label sets only.

Labels never carry an owner, a key, a file id or a raw path: routes are their templates
(``/api/v1/files/{file_id}``), methods outside the standard ones are ``other``, failure
reasons are a fixed set of classes (:func:`failure_class`).

The values live in prometheus_client's process-wide registry. Under ``bigupload serve``
``PROMETHEUS_MULTIPROC_DIR`` is set before this module is imported (see
:mod:`bigupload.metrics.collect`), so every process writes its own file and a scrape sums them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Latency buckets, in seconds, for requests and store calls.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Signing is local CPU work: microseconds to a millisecond or so.
SIGNING_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)

HTTP_REQUESTS = Counter(
    "bigupload_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "bigupload_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

UPLOAD_TICKETS = Counter(
    "bigupload_upload_tickets",
    "Upload tickets answered, by kind: put (one signed PUT), post (a browser form POST), "
    "multipart (an upload in parts begun).",
    ["kind"],
)
PART_URLS = Counter(
    "bigupload_part_urls_signed",
    "Part upload URLs signed.",
)
SIGNING_DURATION = Histogram(
    "bigupload_signing_duration_seconds",
    "Time to sign URLs, per call, by kind: put, post, get (downloads), parts (a batch).",
    ["kind"],
    buckets=SIGNING_BUCKETS,
)

FILES = Counter(
    "bigupload_files",
    "Files reaching a status; reason is the failure's class for failed (else empty).",
    ["status", "reason"],
)
BYTES_CONFIRMED = Counter(
    "bigupload_bytes_confirmed",
    "Bytes of the files that became uploaded (the size the store reported).",
)

STORE_CALLS = Counter(
    "bigupload_store_calls",
    "Calls to the store, by operation and outcome "
    "(ok, not_found, unreachable, full, rejected, error).",
    ["operation", "outcome"],
)
STORE_DURATION = Histogram(
    "bigupload_store_call_duration_seconds",
    "Time of calls to the store, by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
STORE_UNREACHABLE_ANSWERS = Counter(
    "bigupload_store_unreachable_answers",
    "API answers 503 storage_unavailable: the store could not be reached.",
)

JOB_ATTEMPTS = Counter(
    "bigupload_job_attempts",
    "Job attempts ended, by kind and outcome (done, retry, waiting, dead, lease_lost).",
    ["kind", "outcome"],
)
JOB_GIVE_UPS = Counter(
    "bigupload_job_give_ups",
    "Jobs that gave up (went dead): out of attempts or failed for good.",
    ["kind"],
)
DELIVERIES = Counter(
    "bigupload_notification_deliveries",
    "Notification delivery attempts, by channel (webhook, email, sns) and outcome "
    "(delivered, retry, failed).",
    ["channel", "outcome"],
)

SSE_STREAMS = Gauge(
    "bigupload_sse_streams_open",
    "Server-sent event streams open now (GET /api/v1/events).",
    multiprocess_mode="livesum",
)
STORAGE_EVENTS = Counter(
    "bigupload_storage_events",
    "Storage event notifications received, by source (webhook, sns, sqs, local) and outcome "
    "(confirmed, failed, duplicate, late, unconfirmed, unknown, removed, missing, error).",
    ["source", "outcome"],
)

RATE_LIMITED = Counter(
    "bigupload_rate_limited",
    "Requests refused with 429, by limiter: owner (RATE_LIMIT) or sign_in (SESSION_RATE_LIMIT).",
    ["limiter"],
)
AUTH_FAILURES = Counter(
    "bigupload_auth_failures",
    "Requests refused for their credentials, by reason (the error code).",
    ["reason"],
)

#: Classes of failure a failed file's reason is counted under.
FAILURE_CLASSES = frozenset(
    {
        "size_mismatch",
        "truncated",
        "checksum_mismatch",
        "content_type_mismatch",
        "file_too_large",
        "client",
        "gave_up",
    }
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CHANNELS = {"webhook": "webhook", "email": "email", "sns_publish": "sns"}
_DELIVERY_OUTCOMES = {"done": "delivered", "retry": "retry", "dead": "failed"}


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


def failure_class(reason: str | None) -> str:
    """``"checksum_mismatch: ..."`` -> ``checksum_mismatch``; an unknown reason is ``other``."""
    if not reason:
        return "other"
    head = reason.split(":", 1)[0].strip()
    return head if head in FAILURE_CLASSES else "other"


def file_reached(status: str, reason: str | None = None) -> None:
    FILES.labels(status, failure_class(reason) if status == "failed" else "").inc()


def job_attempt_ended(kind: str, outcome: str) -> None:
    JOB_ATTEMPTS.labels(kind, outcome).inc()
    if outcome == "dead":
        JOB_GIVE_UPS.labels(kind).inc()
    channel = _CHANNELS.get(kind)
    delivered = _DELIVERY_OUTCOMES.get(outcome)
    if channel is not None and delivered is not None:
        DELIVERIES.labels(channel, delivered).inc()


def storage_events(source: str, counts: dict[str, int]) -> None:
    for outcome, count in counts.items():
        if count:
            STORAGE_EVENTS.labels(source, outcome).inc(count)
