"""``POST /storage-events``: S3 event notifications from MinIO's webhook target and AWS SNS."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["storage events"])
