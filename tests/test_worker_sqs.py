"""``bigupload worker --sqs-queue-url``, as deployed on AWS: a real S3 server (moto over HTTP)
sends the bucket's ObjectCreated events to SQS, the worker process consumes them, confirms the
upload the client never completed, and processes it; the server itself runs no jobs.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.cli.helpers import BIGUPLOAD, Server, clean_env
from tests.cli.test_serve import one_banner_key
from tests.conftest import make_bucket
from tests.support.moto import MotoServer, s3_client
from tests.support.net import free_port
from tests.test_pipeline import PDF, WAIT, file_info, wait_for


def aws(service: str, moto: MotoServer) -> Any:
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=moto.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_the_worker_confirms_and_processes_from_sqs_events(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    bucket = make_bucket(s3_client(moto_server.endpoint_url))
    sqs = aws("sqs", moto_server)
    queue_url = sqs.create_queue(QueueName="bu-" + uuid.uuid4().hex[:16])["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    aws("s3", moto_server).put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    env = {
        "BIGUPLOAD_STORAGE": "s3",
        "BIGUPLOAD_S3_BUCKET": bucket,
        "BIGUPLOAD_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "BIGUPLOAD_S3_REGION": "us-east-1",
        "BIGUPLOAD_AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "BIGUPLOAD_JOB_POLL_INTERVAL": "0.1",
        "BIGUPLOAD_RATE_LIMIT": "off",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    data_dir = tmp_path / "data"
    server = Server(data_dir, free_port(), BIGUPLOAD_RUN_JOBS="false", **env)
    worker: subprocess.Popen[str] | None = None
    try:
        server.wait_for_line("listening on")
        server.wait_until_answering()
        key = one_banner_key(server.stderr)
        with httpx.Client(base_url=server.base_url, timeout=WAIT, trust_env=False) as http:
            ticket = http.post(
                "/api/v1/uploads",
                json={"filename": "r.pdf", "content_type": "application/pdf", "size": len(PDF)},
                headers={"Authorization": f"Bearer {key}"},
            ).json()
        put = httpx.request(
            ticket["method"], ticket["url"], content=PDF, headers=ticket["headers"], timeout=WAIT
        )
        assert put.status_code == 200, put.text
        # No complete call, no worker yet: the event waits on the queue, the file stays pending.
        assert file_info(server.base_url, key, ticket["id"])["status"] == "pending"

        worker = subprocess.Popen(
            [str(BIGUPLOAD), "worker", "--sqs-queue-url", queue_url, "--sqs-wait-seconds", "1"],
            env=clean_env(data_dir, **env),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(
            lambda: file_info(server.base_url, key, ticket["id"])["status"] == "completed",
            "the worker to confirm and process the file",
        )
        info = file_info(server.base_url, key, ticket["id"])
        assert (info["stored_size"], info["detected_content_type"]) == (len(PDF), "application/pdf")
        # Handled messages are deleted: nothing is left for another worker.
        left = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", [])
        assert [json.loads(m["Body"]) for m in left] == []
    finally:
        if worker is not None:
            worker.terminate()
            try:
                code: int | None = worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(15)
                code = None
            stderr = worker.stderr.read() if worker.stderr else ""
            assert code == 0, stderr
        server.stop()
