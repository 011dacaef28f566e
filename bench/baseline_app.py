"""The baseline for ``bench/create_upload.py``: a bare, hand-rolled presigned-URL service.

One ``POST /sign`` endpoint parses a small JSON body and answers a presigned S3 PUT URL made
by ONE reused boto3 client (SigV4, fake credentials, endpoint ``http://127.0.0.1:9000``).
Presigning is pure local computation: no request ever leaves the process.

No auth, no database, no request log: it is the floor of what "answer a signed URL over
HTTP with FastAPI" costs, served by uvicorn with the same settings as ``bigupload serve``.

    python bench/baseline_app.py --port 8001
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import boto3
import uvicorn
from botocore.config import Config
from fastapi import FastAPI
from pydantic import BaseModel, Field

BUCKET = "bench"
EXPIRES_IN = 900

# Explicit (fake) credentials: no credential chain, config file or instance metadata is read.
_client = boto3.session.Session().client(
    "s3",
    endpoint_url="http://127.0.0.1:9000",
    region_name="us-east-1",
    aws_access_key_id="AKIABENCHBENCHBENCH0",
    aws_secret_access_key="bench-secret-bench-secret-bench-secret-00",
    config=Config(signature_version="s3v4"),
)


class SignRequest(BaseModel):
    filename: str
    content_type: str
    size: int = Field(gt=0)


class SignedPut(BaseModel):
    method: str
    url: str
    headers: dict[str, str]


app = FastAPI(title="presign baseline", docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/sign", status_code=201)
async def sign(body: SignRequest) -> SignedPut:
    key = f"uploads/{uuid.uuid4()}"
    url: str = _client.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": BUCKET,
            "Key": key,
            "ContentType": body.content_type,
            "ContentLength": body.size,
        },
        ExpiresIn=EXPIRES_IN,
    )
    return SignedPut(method="PUT", url=url, headers={"Content-Type": body.content_type})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same server settings as ``bigupload serve`` (src/bigupload/cli/serve.py).
    uvicorn.run(
        "baseline_app:app" if args.workers > 1 else app,
        workers=args.workers,
        app_dir=str(Path(__file__).parent),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
