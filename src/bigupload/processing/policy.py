"""Whether a file's detected content type is acceptable (``BIGUPLOAD_CONTENT_TYPE_CHECK``).

- ``off``: the detected type is recorded, never judged.
- ``allow_list`` (the default): when ``BIGUPLOAD_ALLOWED_CONTENT_TYPES`` restricts types (is not
  just ``*/*``), the bytes must be of an allowed type and fit the declared one.
- ``strict``: the bytes must always fit the declared type (and the allow-list, if any).

"The bytes are of an allowed type" when the detected type, or one of the types puremagic found
possible for them, is allowed; bytes with no signature (unknown, or plain UTF-8 text) are
described best by the declared type, which was allowed when the upload began.
"""

from __future__ import annotations

from bigupload.config import Settings
from bigupload.processing.detect import Detection, compatibility, names_of


def restricts_types(settings: Settings) -> bool:
    return "*/*" not in settings.allowed_content_types


def _allowed(settings: Settings, declared: str, detection: Detection) -> bool:
    if detection.content_type in (None, "text/plain") and not detection.candidates:
        return settings.content_type_allowed(declared)
    found = (detection.content_type or "", *detection.candidates)
    return any(
        settings.content_type_allowed(name) for media in found if media for name in names_of(media)
    )


def check(settings: Settings, declared: str, detection: Detection) -> str | None:
    """Why the file must fail (``None`` if it may pass), by the configured check."""
    mode = settings.content_type_check
    if mode == "off" or (mode == "allow_list" and not restricts_types(settings)):
        return None
    found = detection.content_type or "of no known type"
    if compatibility(declared, detection.content_type, detection.candidates) is None:
        return f"content_type_mismatch: declared {declared}, but the bytes are {found}"
    if not _allowed(settings, declared, detection):
        return f"content_type_not_allowed: the bytes are {found}, which is not accepted"
    return None
