"""Text that can be stored and sent: no lone surrogates.

JSON may spell a UTF-16 surrogate on its own (``"\\ud800"``); Python decodes it to a string
that no UTF-8 encoder accepts, so it must never reach the registry or an answer. Requests
carrying one are refused (:mod:`bigupload.json_body`); JSON the registry already holds is
read with each one replaced by U+FFFD (:func:`loads_replacing_surrogates`).
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
#: A JSON escape of a surrogate: only these decode to one (valid UTF-8 text holds none).
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
REPLACEMENT = "\ufffd"

Location = tuple[str | int, ...]


def has_surrogate(text: str) -> bool:
    return _SURROGATE_RE.search(text) is not None


def replace_surrogates(text: str) -> str:
    return _SURROGATE_RE.sub(REPLACEMENT, text)


def may_hold_surrogates(json_text: str) -> bool:
    """Whether decoding this JSON text may give a surrogate (a quick test on the text)."""
    return _SURROGATE_ESCAPE_RE.search(json_text) is not None


def find_surrogate(value: Any, location: Location = ()) -> Location | None:
    """Where the first string holding a lone surrogate is in a decoded JSON document (a key
    is located by its own name, with the surrogate replaced), or None."""
    if isinstance(value, str):
        return location if has_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if has_surrogate(key):
                return (*location, replace_surrogates(key))
            found = find_surrogate(item, (*location, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_surrogate(item, (*location, index))
            if found is not None:
                return found
    return None


def without_surrogates(value: Any) -> Any:
    """A decoded JSON document with every lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, dict):
        return {replace_surrogates(k): without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_surrogates(item) for item in value]
    return value


def loads_replacing_surrogates(json_text: str | bytes) -> Any:
    """``json.loads`` for the registry's JSON columns: rows stored before requests were
    checked may hold escaped lone surrogates; they read as U+FFFD instead of failing later."""
    document = json.loads(json_text)
    text = json_text if isinstance(json_text, str) else json_text.decode("utf-8", "replace")
    return without_surrogates(document) if may_hold_surrogates(text) else document
