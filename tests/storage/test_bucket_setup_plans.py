"""The bucket set-up's planning: configuration in, the change and plain-word problems out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bigupload.config import ConfigError, load_settings
from bigupload.storage.s3 import setup
from bigupload.storage.s3.setup import CORS_RULE_ID, LIFECYCLE_RULE_ID, NOTIFICATION_ID, Desired

PAGE = "https://uploads.example.com"
QUEUE = "arn:aws:sqs:eu-west-1:123456789012:bigupload"


def settings(tmp_path: Path, **values: Any) -> Any:
    return load_settings(data_dir=tmp_path, **values)


def test_origins_are_the_page_and_cors_origins_unless_set(tmp_path: Path) -> None:
    derived = settings(
        tmp_path,
        public_url="https://files.example.com/bigupload",
        cors_origins="https://app.example.com",
    )
    assert Desired.from_settings(derived).origins == (
        "https://files.example.com",
        "https://app.example.com",
    )
    chosen = settings(tmp_path, s3_cors_origins="*")
    assert Desired.from_settings(chosen).origins == ("*",)
    assert Desired.from_settings(chosen, origins=(PAGE,)).origins == (PAGE,)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"s3_events_queue_arn": QUEUE, "s3_events_topic_arn": "arn:aws:sns:eu-west-1:1:t"},
            "set BIGUPLOAD_S3_EVENTS_QUEUE_ARN or BIGUPLOAD_S3_EVENTS_TOPIC_ARN, not both",
        ),
        (
            {"s3_events_queue_arn": "arn:aws:sns:eu-west-1:1:t"},
            "BIGUPLOAD_S3_EVENTS_QUEUE_ARN: 'arn:aws:sns:eu-west-1:1:t' is not an SQS ARN",
        ),
        (
            {"s3_kms_key_id": "k"},
            "BIGUPLOAD_S3_KMS_KEY_ID needs BIGUPLOAD_S3_DEFAULT_ENCRYPTION=sse-kms",
        ),
    ],
)
def test_bad_set_up_settings_are_one_line(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **values)
    assert message in str(caught.value)


def test_a_foreign_rule_answering_first_for_our_origin_is_named_and_ours_goes_first() -> None:
    desired = Desired(origins=(PAGE,))
    theirs = {"ID": "theirs", "AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}
    current = {"CORSRules": [theirs, setup.cors_rule(desired)]}
    section = setup.plan_cors(current, desired)
    assert section.problems == [
        f"the CORS rule theirs comes before {CORS_RULE_ID} for the same origins, so browsers get "
        "its answer instead"
    ]
    assert section.new == {"CORSRules": [setup.cors_rule(desired), theirs]}

    elsewhere = {
        "ID": "elsewhere",
        "AllowedOrigins": ["https://x.example"],
        "AllowedMethods": ["GET"],
    }
    quiet = setup.plan_cors({"CORSRules": [elsewhere, setup.cors_rule(desired)]}, desired)
    assert (quiet.problems, quiet.changed, quiet.kept) == ([], False, 1)


def test_a_cors_rule_read_back_in_other_case_and_order_is_ours_unchanged() -> None:
    desired = Desired(origins=(PAGE,))
    rule = setup.cors_rule(desired)
    rule["AllowedMethods"] = ["head", "get", "post", "put"]
    rule["ExposeHeaders"] = [header.lower() for header in reversed(rule["ExposeHeaders"])]
    assert not setup.plan_cors({"CORSRules": [rule]}, desired).changed


def test_lifecycle_rule_problems() -> None:
    desired = Desired(origins=(PAGE,), abort_after_days=3)
    rule = {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Disabled",
        "Prefix": "",
        "Expiration": {"Days": 1},
    }
    section = setup.plan_lifecycle({"Rules": [rule]}, desired)
    assert section.problems == [
        f"the lifecycle rule {LIFECYCLE_RULE_ID} is disabled",
        f"the lifecycle rule {LIFECYCLE_RULE_ID} applies to the prefix '', not the prefix "
        "'uploads/'",
        f"the lifecycle rule {LIFECYCLE_RULE_ID} does not abort incomplete multipart uploads",
    ]
    assert section.new == {"Rules": [setup.lifecycle_rule(desired)]}
    assert setup.plan_lifecycle(section.new, desired).changed is False


def test_a_notification_as_aws_answers_it_is_ours_unchanged() -> None:
    desired = Desired(origins=(PAGE,), queue_arn=QUEUE)
    answered = {
        "QueueConfigurations": [
            {
                "Id": NOTIFICATION_ID,
                "QueueArn": QUEUE,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "uploads/"}]}},
            }
        ],
        "EventBridgeConfiguration": {},
    }
    section = setup.plan_notifications(answered, desired)
    assert (section.changed, section.kept) == (False, 1)


def test_notifications_and_encryption_not_asked_for_are_left_alone() -> None:
    desired = Desired(origins=(PAGE,))
    assert setup.plan_notifications(None, desired).skipped == (
        "not asked for (no queue or topic ARN configured)"
    )
    assert setup.plan_encryption(None, desired).skipped == "not asked for"


def test_encryption_with_another_kms_key_is_named() -> None:
    desired = Desired(origins=(PAGE,), encryption="sse-kms", kms_key_id="alias/bigupload")
    current = {
        "Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}},
        ]
    }
    section = setup.plan_encryption(current, desired)
    assert section.problems == [
        "the bucket's default encryption uses the KMS key (the AWS managed key), not "
        "alias/bigupload"
    ]
    assert section.new == {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": "alias/bigupload",
                }
            }
        ]
    }


def test_a_minio_webhook_target_is_a_queue_arn(tmp_path: Path) -> None:
    minio = settings(tmp_path, s3_events_queue_arn="arn:minio:sqs::bigupload:webhook")
    list_name, config = setup.notification(Desired.from_settings(minio))
    assert (list_name, config["QueueArn"]) == (
        "QueueConfigurations",
        "arn:minio:sqs::bigupload:webhook",
    )
