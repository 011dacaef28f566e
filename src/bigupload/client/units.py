"""Sizes as people write them (``64MiB``, ``5G``) and as people read them."""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"67108864"``, ``"64MiB"``, ``"64M"`` or ``"5 GiB"`` in bytes (units are powers of 2)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (use bytes, or a number with K, M, G or T)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").upper()[:1]]


def format_size(size: int | float | None) -> str:
    """``1536`` as ``1.5 KiB``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
