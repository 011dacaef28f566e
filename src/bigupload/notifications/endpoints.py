"""The webhook delivery log: list a caller's deliveries and replay one."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["webhooks"])
