"""``GET /events``: server-sent events of the caller's files' status changes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["events"])
