"""``bigupload storage setup`` and ``check``, as real processes, against moto and LocalStack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bigupload.storage.s3.setup import (
    CORS_RULE_ID,
    LIFECYCLE_RULE_ID,
    NOTIFICATION_ID,
)
from tests.cli.helpers import Result, Server, bigupload
from tests.support.moto import s3_client
from tests.support.net import free_port
from tests.support.unimplemented import UnimplementedProxy

PAGE = "https://uploads.example.com"
FOREIGN_CORS = {
    "ID": "their-downloads",
    "AllowedOrigins": ["https://shop.example.com"],
    "AllowedMethods": ["GET"],
    "AllowedHeaders": ["Authorization"],
    "MaxAgeSeconds": 60,
}
FOREIGN_LIFECYCLE = {
    "ID": "their-logs",
    "Status": "Enabled",
    "Filter": {"Prefix": "logs/"},
    "Expiration": {"Days": 30},
}


@dataclass
class Bucket:
    endpoint_url: str
    name: str
    s3: Any
    queue_arn: str
    other_queue_arn: str

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "BIGUPLOAD_STORAGE": "s3",
            "BIGUPLOAD_S3_BUCKET": self.name,
            "BIGUPLOAD_S3_ENDPOINT_URL": self.endpoint_url,
            "BIGUPLOAD_S3_REGION": "us-east-1",
            "BIGUPLOAD_PUBLIC_URL": PAGE,
            "BIGUPLOAD_S3_EVENTS_QUEUE_ARN": self.queue_arn,
            **extra,
        }

    def config(self) -> dict[str, Any]:
        """The bucket's CORS rules, lifecycle rules and notifications, as the store answers."""
        notifications = self.s3.get_bucket_notification_configuration(Bucket=self.name)
        notifications.pop("ResponseMetadata")
        return {
            "cors": _or_none(self.s3.get_bucket_cors, self.name, "CORSRules"),
            "lifecycle": _or_none(self.s3.get_bucket_lifecycle_configuration, self.name, "Rules"),
            "notifications": notifications,
        }


def _or_none(call: Any, bucket: str, key: str) -> Any:
    try:
        return call(Bucket=bucket)[key]
    except ClientError as exc:
        if exc.response["Error"]["Code"].startswith("NoSuch"):  # no configuration yet
            return None
        raise


def _queue(endpoint_url: str, name: str) -> str:
    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name="us-east-1")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.strict_s3)])
def s3_endpoint(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("moto_server" if request.param == "moto" else "strict_s3")
    return str(server.endpoint_url)


def _bucket(endpoint_url: str) -> Bucket:
    s3 = s3_client(endpoint_url)
    name = "bu-" + uuid.uuid4().hex[:20]
    s3.create_bucket(Bucket=name)
    suffix = uuid.uuid4().hex[:8]
    return Bucket(
        endpoint_url,
        name,
        s3,
        _queue(endpoint_url, f"bigupload-{suffix}"),
        _queue(endpoint_url, f"theirs-{suffix}"),
    )


@pytest.fixture
def bucket(s3_endpoint: str) -> Bucket:
    return _bucket(s3_endpoint)


@pytest.fixture
def foreign(bucket: Bucket) -> Bucket:
    """A bucket that already has someone else's CORS rule, lifecycle rule and notification."""
    bucket.s3.put_bucket_cors(Bucket=bucket.name, CORSConfiguration={"CORSRules": [FOREIGN_CORS]})
    bucket.s3.put_bucket_lifecycle_configuration(
        Bucket=bucket.name, LifecycleConfiguration={"Rules": [FOREIGN_LIFECYCLE]}
    )
    bucket.s3.put_bucket_notification_configuration(
        Bucket=bucket.name,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "their-removals",
                    "QueueArn": bucket.other_queue_arn,
                    "Events": ["s3:ObjectRemoved:*"],
                }
            ]
        },
    )
    return bucket


def storage(tmp_path: Path, bucket: Bucket, *args: str, **env: str) -> Result:
    return bigupload(tmp_path / "data", "storage", *args, **bucket.env(**env))


def _by_id(items: list[dict[str, Any]] | None, key: str = "ID") -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items or []}


def test_setup_keeps_foreign_rules_and_a_second_run_changes_nothing(
    tmp_path: Path, foreign: Bucket
) -> None:
    before = foreign.config()

    first = storage(tmp_path, foreign, "setup")
    assert first.code == 0, first.stderr
    assert first.out_lines[-1] == f"bucket {foreign.name}: set up (3 of its settings changed)"
    assert "CORS: set up, keeping 1 of others' (was: the bucket has no CORS rule" in first.stdout
    assert "default encryption: skipped: not asked for" in first.out_lines

    after = foreign.config()
    cors = _by_id(after["cors"])
    assert set(cors) == {CORS_RULE_ID, FOREIGN_CORS["ID"]}
    assert after["cors"][0]["ID"] == CORS_RULE_ID  # first, so no other rule answers for it
    assert cors[FOREIGN_CORS["ID"]] == _by_id(before["cors"])[FOREIGN_CORS["ID"]]
    ours = cors[CORS_RULE_ID]
    assert ours["AllowedOrigins"] == [PAGE]
    assert sorted(ours["AllowedMethods"]) == ["GET", "HEAD", "POST", "PUT"]
    assert {"ETag", "Location", "x-amz-checksum-sha256"} <= set(ours["ExposeHeaders"])

    lifecycle = _by_id(after["lifecycle"])
    assert lifecycle["their-logs"] == _by_id(before["lifecycle"])["their-logs"]
    assert lifecycle[LIFECYCLE_RULE_ID]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    assert lifecycle[LIFECYCLE_RULE_ID]["Filter"] == {"Prefix": "uploads/"}

    queues = _by_id(after["notifications"]["QueueConfigurations"], "Id")
    assert set(queues) == {"their-removals", NOTIFICATION_ID}
    assert queues["their-removals"] == before["notifications"]["QueueConfigurations"][0]
    assert queues[NOTIFICATION_ID]["QueueArn"] == foreign.queue_arn
    assert queues[NOTIFICATION_ID]["Events"] == ["s3:ObjectCreated:*"]

    second = storage(tmp_path, foreign, "setup")
    assert second.code == 0, second.stderr
    assert second.out_lines == [
        "CORS: already set up",
        "lifecycle: already set up",
        "event notifications: already set up",
        "default encryption: skipped: not asked for",
        f"bucket {foreign.name}: already set up",
    ]
    assert foreign.config() == after


def test_dry_run_prints_the_diff_and_changes_nothing(tmp_path: Path, foreign: Bucket) -> None:
    before = foreign.config()

    dry = storage(tmp_path, foreign, "setup", "--dry-run", "--abort-after-days", "3")
    assert dry.code == 0, dry.stderr
    assert foreign.config() == before
    assert dry.out_lines[-1] == f"bucket {foreign.name}: would change 3 of its settings (dry run)"
    lines = dry.out_lines
    for name in ("CORS", "lifecycle", "event notifications"):
        assert f"--- {name} (now)" in lines
        assert f"+++ {name} (after setup)" in lines
    assert f'+      "ID": "{CORS_RULE_ID}",' in lines
    assert f'+      "ID": "{LIFECYCLE_RULE_ID}",' in lines
    assert '+        "DaysAfterInitiation": 3' in lines
    assert f'+      "Id": "{NOTIFICATION_ID}",' in lines
    assert f'+      "QueueArn": "{foreign.queue_arn}"' in lines
    # Others' rules are context, neither removed nor added.
    assert not any(line.startswith(("-", "+")) and "their-" in line for line in lines)

    storage(tmp_path, foreign, "setup")
    again = storage(tmp_path, foreign, "setup", "--dry-run")
    assert again.code == 0, again.stderr
    assert again.out_lines[-1] == f"bucket {foreign.name}: already set up"
    assert not any(line.startswith(("---", "+++")) for line in again.out_lines)


def test_check_passes_after_setup_and_names_what_a_broken_bucket_lacks(
    tmp_path: Path, foreign: Bucket
) -> None:
    unset = storage(tmp_path, foreign, "check")
    assert unset.code == 1
    assert unset.out_lines[-1] == (
        f"bucket {foreign.name}: 3 problems; `bigupload storage setup` fixes them"
    )

    assert storage(tmp_path, foreign, "setup").code == 0
    ok = storage(tmp_path, foreign, "check")
    assert ok.code == 0, ok.stdout + ok.stderr
    assert ok.out_lines == [
        "CORS: ok",
        "lifecycle: ok",
        "event notifications: ok",
        "default encryption: skipped: not asked for",
        f"bucket {foreign.name}: set up for bigupload",
    ]

    # By hand: our CORS rule loses POST and ETag, our lifecycle rule goes, and the notification
    # points at another queue.
    config = foreign.config()
    ours = _by_id(config["cors"])[CORS_RULE_ID]
    ours["AllowedMethods"] = ["PUT", "GET", "HEAD"]
    ours["ExposeHeaders"] = [h for h in ours["ExposeHeaders"] if h != "ETag"]
    foreign.s3.put_bucket_cors(Bucket=foreign.name, CORSConfiguration={"CORSRules": config["cors"]})
    foreign.s3.put_bucket_lifecycle_configuration(
        Bucket=foreign.name,
        LifecycleConfiguration={
            "Rules": [r for r in config["lifecycle"] if r["ID"] != LIFECYCLE_RULE_ID]
        },
    )
    notifications = config["notifications"]
    for entry in notifications["QueueConfigurations"]:
        if entry["Id"] == NOTIFICATION_ID:
            entry["QueueArn"] = foreign.other_queue_arn
            entry["Events"] = ["s3:ObjectCreated:Put"]
    foreign.s3.put_bucket_notification_configuration(
        Bucket=foreign.name, NotificationConfiguration=notifications
    )

    broken = storage(tmp_path, foreign, "check")
    assert broken.code == 1
    assert broken.out_lines == [
        f"CORS: the CORS rule {CORS_RULE_ID} does not allow the method POST",
        f"CORS: the CORS rule {CORS_RULE_ID} does not expose the header ETag",
        f"lifecycle: the bucket has no lifecycle rule {LIFECYCLE_RULE_ID}: parts of uploads "
        "nobody finishes under uploads/ are kept (and paid for) until aborted by hand",
        f"event notifications: the notification {NOTIFICATION_ID} sends events to "
        f"{foreign.other_queue_arn}, not the queue {foreign.queue_arn}",
        f"event notifications: the notification {NOTIFICATION_ID} does not send s3:ObjectCreated:*",
        "default encryption: skipped: not asked for",
        f"bucket {foreign.name}: 5 problems; `bigupload storage setup` fixes them",
    ]

    fixed = storage(tmp_path, foreign, "setup")
    assert fixed.code == 0, fixed.stderr
    assert storage(tmp_path, foreign, "check").code == 0
    after = foreign.config()
    assert _by_id(after["cors"])[FOREIGN_CORS["ID"]]["AllowedOrigins"] == [
        "https://shop.example.com"
    ]
    assert "their-logs" in _by_id(after["lifecycle"])


def test_check_names_a_wrong_origin_and_abort_days(tmp_path: Path, bucket: Bucket) -> None:
    assert storage(tmp_path, bucket, "setup").code == 0
    other = storage(
        tmp_path,
        bucket,
        "check",
        "--abort-after-days",
        "2",
        BIGUPLOAD_CORS_ORIGINS="https://app.example.com",
    )
    assert other.code == 1
    assert other.out_lines[:2] == [
        f"CORS: the CORS rule {CORS_RULE_ID} does not allow the origin https://app.example.com",
        f"lifecycle: the lifecycle rule {LIFECYCLE_RULE_ID} aborts incomplete multipart uploads "
        "after 7 days, not 2",
    ]


def test_default_encryption(tmp_path: Path, bucket: Bucket) -> None:
    made = storage(tmp_path, bucket, "setup", "--encryption", "sse-s3")
    assert made.code == 0, made.stderr
    default = bucket.s3.get_bucket_encryption(Bucket=bucket.name)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "AES256"
    assert storage(tmp_path, bucket, "check", "--encryption", "sse-s3").code == 0

    kms = storage(tmp_path, bucket, "check", BIGUPLOAD_S3_DEFAULT_ENCRYPTION="sse-kms")
    assert kms.code == 1
    assert (
        "default encryption: the bucket's default encryption is AES256, not SSE-KMS (aws:kms)"
        in (kms.out_lines)
    )


@pytest.fixture
def moto_bucket(moto_server: Any) -> Bucket:
    return _bucket(str(moto_server.endpoint_url))


@pytest.fixture
def no_notifications(moto_bucket: Bucket) -> Iterator[Bucket]:
    """The bucket through a store that has no notification API (501 NotImplemented)."""
    with UnimplementedProxy(moto_bucket.endpoint_url, {"notification"}) as proxy:
        moto_bucket.endpoint_url = proxy.endpoint_url
        yield moto_bucket


def test_a_missing_api_is_reported_and_the_rest_is_set_up(
    tmp_path: Path, no_notifications: Bucket
) -> None:
    bucket = no_notifications
    made = storage(tmp_path, bucket, "setup")
    assert made.code == 0, made.stderr
    assert (
        "event notifications: skipped: the store does not implement "
        "GetBucketNotificationConfiguration"
    ) in made.out_lines
    assert made.out_lines[-1] == f"bucket {bucket.name}: set up (2 of its settings changed)"
    assert _by_id(bucket.s3.get_bucket_cors(Bucket=bucket.name)["CORSRules"])[CORS_RULE_ID]

    checked = storage(tmp_path, bucket, "check")
    assert checked.code == 0, checked.stdout
    assert checked.out_lines[:3] == [
        "CORS: ok",
        "lifecycle: ok",
        "event notifications: skipped: the store does not implement "
        "GetBucketNotificationConfiguration",
    ]


def test_the_local_store_needs_no_setup(tmp_path: Path) -> None:
    for command in ("setup", "check"):
        done = bigupload(tmp_path / "data", "storage", command)
        assert done.code == 0, done.stderr
        assert done.out_lines == [
            "the local store needs no set-up: nothing to do (BIGUPLOAD_STORAGE=local)"
        ]


def test_a_missing_bucket_is_one_line(tmp_path: Path, bucket: Bucket) -> None:
    done = storage(tmp_path, bucket, "check", BIGUPLOAD_S3_BUCKET="bu-nosuchbucket")
    assert done.code == 1
    assert done.stderr.strip() == "bigupload: the bucket 'bu-nosuchbucket' does not exist"


def test_serve_warns_at_start_of_each_problem_and_not_once_set_up(
    tmp_path: Path, bucket: Bucket
) -> None:
    env = bucket.env(BIGUPLOAD_RUN_JOBS="false")
    server = Server(tmp_path / "data", free_port(), **env)
    try:
        line = server.wait_for_line("storage check: lifecycle: ")
        assert f"the bucket has no lifecycle rule {LIFECYCLE_RULE_ID}" in line
        assert server.wait_for_line("storage check: CORS: ").endswith(
            f"the bucket has no CORS rule {CORS_RULE_ID}: browsers on {PAGE} cannot upload to it"
        )
        server.wait_for_line("storage check: event notifications: ")
        server.wait_for_line("`bigupload storage setup` sets the bucket up for bigupload")
        server.wait_until_answering()
    finally:
        server.stop()

    assert storage(tmp_path, bucket, "setup").code == 0
    server = Server(tmp_path / "data", free_port(), **env)
    try:
        server.wait_until_answering()
    finally:
        server.stop()
    assert not [line for line in server.stderr if "storage check" in line]


def test_events_to_an_sns_topic(tmp_path: Path, bucket: Bucket) -> None:
    sns = boto3.client("sns", endpoint_url=bucket.endpoint_url, region_name="us-east-1")
    topic = str(sns.create_topic(Name=f"bigupload-{uuid.uuid4().hex[:8]}")["TopicArn"])
    env = {"BIGUPLOAD_S3_EVENTS_QUEUE_ARN": "", "BIGUPLOAD_S3_EVENTS_TOPIC_ARN": topic}

    made = storage(tmp_path, bucket, "setup", **env)
    assert made.code == 0, made.stdout + made.stderr
    topics = bucket.config()["notifications"]["TopicConfigurations"]
    assert [(t["Id"], t["TopicArn"], t["Events"]) for t in topics] == [
        (NOTIFICATION_ID, topic, ["s3:ObjectCreated:*"])
    ]
    assert storage(tmp_path, bucket, "check", **env).code == 0

    queue = storage(tmp_path, bucket, "check")  # the settings now name the queue instead
    assert queue.code == 1
    assert (
        f"event notifications: the notification {NOTIFICATION_ID} sends events to {topic}, "
        f"not the queue {bucket.queue_arn}"
    ) in queue.out_lines
