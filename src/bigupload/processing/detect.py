"""What the stored bytes really are, and whether that agrees with what the uploader declared.

:func:`sniff` reads the magic bytes of an object's first bytes with ``puremagic``; bytes it does
not recognise are ``text/plain`` when they are UTF-8 without NUL bytes, else of no known type.
:func:`compatible` decides whether a declared type fits what was found, by the rules in
:data:`RULES`, first match wins; the names of those few media-type families it needs are in the
tables just above it.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import puremagic
from puremagic import main as _magic

#: Bytes the detection needs: puremagic's signatures reach at most ~36 KiB into a file.
SNIFF_BYTES = 64 * 1024

# -- the tables ------------------------------------------------------------------------------

#: Names of one media type, the canonical (puremagic's, or IANA's) first.
ALIASES: tuple[tuple[str, ...], ...] = (
    ("image/jpeg", "image/jpg", "image/pjpeg"),
    ("image/bmp", "image/x-bmp", "image/x-ms-bmp"),
    ("image/heif", "image/heic", "image/heif-sequence", "image/heic-sequence"),
    ("application/zip", "application/x-zip-compressed", "application/x-zip"),
    ("application/x-gzip", "application/gzip"),
    ("application/x-bzip2", "application/x-bzip"),
    ("application/x-rar-compressed", "application/vnd.rar", "application/x-rar"),
    ("audio/wave", "audio/wav", "audio/x-wav", "audio/vnd.wave"),
    ("audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg-3"),
    ("audio/mp4", "audio/x-m4a", "audio/m4a"),
    ("video/avi", "video/x-msvideo", "video/msvideo"),
    ("application/x-matroska", "video/x-matroska"),
    ("application/xml", "text/xml"),
    ("text/javascript", "application/javascript", "application/x-javascript"),
)

#: Containers whose members have types of their own: the magic bytes say "a ZIP file", not
#: which kind of ZIP file (``+zip`` types belong to the ZIP family too).
FAMILIES: dict[str, frozenset[str]] = {
    "zip": frozenset(
        {
            "application/zip",
            "application/java-archive",
            "application/vnd.android.package-archive",
            "application/x-xpinstall",
            "application/vnd.ms-xpsdocument",
            "application/oxps",
            "application/vnd.google-earth.kmz",
            "application/vnd.apple.keynote",
            "application/vnd.apple.pages",
            "application/vnd.apple.numbers",
        }
    ),
    "ole": frozenset(  # Microsoft's compound files
        {
            "application/x-ole-storage",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.ms-outlook",
            "application/vnd.visio",
            "application/x-visio",
            "application/x-msi",
            "application/x-ms-installer",
        }
    ),
    "iso-bmff": frozenset(
        {
            "video/mp4",
            "video/quicktime",
            "video/x-m4v",
            "video/3gpp",
            "video/3gpp2",
            "audio/mp4",
            "audio/3gpp",
        }
    ),
    "matroska": frozenset(
        {"application/x-matroska", "video/webm", "audio/webm", "audio/x-matroska"}
    ),
    "ogg": frozenset({"application/ogg", "audio/ogg", "video/ogg", "audio/opus", "audio/vorbis"}),
}
#: Prefixes of ZIP-based document formats (OOXML, OpenDocument, macro-enabled Office files).
ZIP_PREFIXES = (
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
    "application/vnd.ms-word.",
    "application/vnd.ms-excel.",
    "application/vnd.ms-powerpoint.",
)
#: When puremagic ranks several types equally, the one the bytes surely are.
GENERIC = ("application/zip", "application/x-ole-storage", "application/xml")
#: Textual types outside ``text/*``; so is any ``+json``, ``+xml`` or ``+yaml`` type.
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/csv",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/x-sh",
        "application/x-httpd-php",
        "application/graphql",
        "image/svg+xml",
    }
)
#: Types puremagic knows, but whose files may lack the signature (MP3 without an ID3 tag,
#: ADTS AAC, MPEG streams): not finding it proves nothing.
WEAK_SIGNATURES = frozenset(
    {"audio/mpeg", "audio/aac", "video/mp2t", "video/mpeg", "application/octet-stream"}
)


@cache
def _canonical_names() -> dict[str, str]:
    return {alias: names[0] for names in ALIASES for alias in names}


def normalize(content_type: str) -> str:
    """``content_type`` without parameters, in lower case, by its canonical name."""
    base = content_type.split(";", 1)[0].strip().lower()
    return _canonical_names().get(base, base)


def names_of(content_type: str) -> tuple[str, ...]:
    """Every name of ``content_type`` (itself first), to match against an allow-list."""
    canonical = normalize(content_type)
    for names in ALIASES:
        if canonical == names[0]:
            return names
    return (canonical,)


def family(content_type: str) -> str | None:
    media = normalize(content_type)
    if media.endswith("+zip") or media.startswith(ZIP_PREFIXES):
        return "zip"
    for name, members in FAMILIES.items():
        if media in members:
            return name
    if media.endswith("+json") or media in ("application/json", "application/x-ndjson"):
        return "json"
    if media.endswith("+xml") or media == "application/xml":
        return "xml"
    return None


def textual(content_type: str) -> bool:
    media = normalize(content_type)
    return (
        media.startswith("text/")
        or media in TEXT_TYPES
        or media.endswith(("+json", "+xml", "+yaml"))
    )


@cache
def _signature_types() -> frozenset[str]:
    known = {row.mime_type for row in _magic.magic_header_array}
    known |= {row.mime_type for row in _magic.magic_footer_array}
    for rows in _magic.multi_part_dict.values():
        known |= {row.mime_type for row in rows}
    return frozenset(normalize(media) for media in known if media)


def recognisable(content_type: str) -> bool:
    """Whether a file of this type carries a signature puremagic finds (text never does)."""
    media = normalize(content_type)
    return (
        media in _signature_types()
        and not textual(media)
        and media not in WEAK_SIGNATURES
        and family(media) not in ("json", "xml")
    )


@dataclass(frozen=True, slots=True)
class _Types:
    declared: str
    detected: str | None
    candidates: frozenset[str]


def _text(t: _Types) -> bool:
    if t.detected is None or not (textual(t.declared) and textual(t.detected)):
        return False
    if "text/plain" in (t.detected, t.declared):
        return True
    return family(t.declared) in ("json", "xml") and family(t.declared) == family(t.detected)


def _same_family(t: _Types) -> bool:
    kind = family(t.declared)
    return (
        t.detected is not None
        and kind in FAMILIES
        and any(family(found) == kind for found in (t.detected, *t.candidates))
    )


#: When a declared type fits what was found; the first rule that holds names the reason.
RULES: tuple[tuple[str, Callable[[_Types], bool]], ...] = (
    # RFC 2046: "arbitrary binary data", the uploader claimed nothing.
    ("unspecified", lambda t: t.declared == "application/octet-stream"),
    ("equal", lambda t: t.detected == t.declared),
    # puremagic found several types for these bytes, the declared one among them.
    ("candidate", lambda t: t.declared in t.candidates),
    # Text has no signature: UTF-8 without NULs fits any textual type; JSON fits JSON types.
    ("text", _text),
    # A ZIP (OLE, ISO-BMFF, Matroska, Ogg) file declared as a format built on it, or back.
    ("container", _same_family),
    # No signature found, and the declared type would have had one if it were that type.
    ("unknown", lambda t: t.detected is None and not recognisable(t.declared)),
)


def compatibility(
    declared: str, detected: str | None, candidates: Iterable[str] = ()
) -> str | None:
    """The name of the rule by which ``declared`` fits the bytes, or ``None`` if none does."""
    types = _Types(
        declared=normalize(declared),
        detected=normalize(detected) if detected else None,
        candidates=frozenset(normalize(media) for media in candidates if media),
    )
    for name, holds in RULES:
        if holds(types):
            return name
    return None


def compatible(declared: str, detected: str | None, candidates: Iterable[str] = ()) -> bool:
    """Whether bytes found to be ``detected`` (puremagic also said ``candidates``) may be what
    the uploader declared. ``detected`` is ``None`` for bytes of no known type."""
    return compatibility(declared, detected, candidates) is not None


# -- sniffing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detection:
    """What the first bytes of an object are."""

    #: The best media type, ``text/plain`` for unrecognised UTF-8, ``None`` when unknown.
    content_type: str | None
    #: Every media type puremagic matched, most confident first.
    candidates: tuple[str, ...] = ()
    #: puremagic's description of the best match.
    description: str | None = None
    confidence: float | None = None
    sniffed_bytes: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "content_type": self.content_type,
            "candidates": list(self.candidates),
            "description": self.description,
            "confidence": self.confidence,
            "sniffed_bytes": self.sniffed_bytes,
        }


def sniff(data: bytes, *, whole: bool = False) -> Detection:
    """Detect the type of an object from its first bytes ``data``.

    ``whole`` says ``data`` is the entire object: only then do signatures at the end of a file
    count, and a multi-byte character cut at the end is not forgiven.
    """
    if not data:
        return Detection(None)
    try:
        matches = puremagic.magic_string(data)
    except (puremagic.PureError, ValueError):
        matches = []
    named = [m for m in matches if m.mime_type and (whole or m.offset >= 0)]
    if named:
        top = max(m.confidence for m in named)
        best_tier = [m for m in named if m.confidence == top]
        best = next(
            (m for generic in GENERIC for m in best_tier if normalize(m.mime_type) == generic),
            best_tier[0],
        )
        candidates = tuple(dict.fromkeys(normalize(m.mime_type) for m in named))
        return Detection(
            normalize(best.mime_type),
            candidates,
            description=best.name,
            confidence=best.confidence,
            sniffed_bytes=len(data),
        )
    if _utf8_text(data, whole=whole):
        return Detection("text/plain", description="UTF-8 text", sniffed_bytes=len(data))
    return Detection(None, sniffed_bytes=len(data))


def _utf8_text(data: bytes, *, whole: bool) -> bool:
    if b"\x00" in data:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=whole)
    except UnicodeDecodeError:
        return False
    return True
