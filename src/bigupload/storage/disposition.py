"""``Content-Disposition`` values that carry any filename safely (RFC 6266 and RFC 5987)."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote


def _ascii_fallback(filename: str) -> str:
    decomposed = unicodedata.normalize("NFKD", filename)
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        # '%' too: some browsers percent-decode the plain filename (RFC 6266, appendix D).
        if ch in '"\\%' or ord(ch) < 0x20 or ord(ch) >= 0x7F:
            out.append("_")
        else:
            out.append(ch)
    return "".join(out) or "download"


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """``attachment; filename="..."``, plus ``filename*=UTF-8''...`` for names beyond ASCII."""
    kind = "inline" if inline else "attachment"
    fallback = _ascii_fallback(filename)
    value = f'{kind}; filename="{fallback}"'
    if filename and fallback != filename:  # an empty filename* would hide "download"
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
