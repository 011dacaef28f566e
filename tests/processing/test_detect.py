"""Detecting what bytes are, and whether that fits the declared type: pure functions."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from bigupload.processing import policy
from bigupload.processing.detect import (
    Detection,
    compatibility,
    compatible,
    normalize,
    recognisable,
    sniff,
)
from tests.conftest import make_settings

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def zipped(*members: tuple[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members:
            archive.writestr(name, text)
    return buffer.getvalue()


# -- compatible ---------------------------------------------------------------------------------

CASES = [
    # (declared, detected, candidates, the rule that holds or None)
    ("image/png", "image/png", (), "equal"),
    ("IMAGE/PNG; name=x", "image/png", (), "equal"),
    ("image/jpg", "image/jpeg", (), "equal"),
    ("audio/wav", "audio/wave", (), "equal"),
    ("application/gzip", "application/x-gzip", (), "equal"),
    ("application/pdf", "image/png", ("image/png",), None),
    ("image/png", "application/pdf", ("application/pdf",), None),
    (
        "application/vnd.fdf",
        "application/pdf",
        ("application/pdf", "application/vnd.fdf"),
        "candidate",
    ),
    (DOCX, "application/zip", ("application/zip", DOCX), "candidate"),
    # text has no signature
    ("text/csv", "text/plain", (), "text"),
    ("application/json", "text/plain", (), "text"),
    ("application/ld+json", "text/plain", (), "text"),
    ("application/geo+json", "application/json", ("application/json",), "text"),
    ("image/svg+xml", "application/xml", ("application/xml",), "text"),
    ("text/xml", "application/xml", ("application/xml",), "equal"),
    ("text/plain", "text/html", ("text/html",), "text"),
    ("text/markdown", "text/html", ("text/html",), None),
    ("application/json", "image/png", ("image/png",), None),
    ("image/png", "text/plain", (), None),
    # containers
    (DOCX, "application/zip", (), "container"),
    ("application/epub+zip", "application/zip", (), "container"),
    ("application/java-archive", "application/zip", (), "container"),
    ("application/vnd.oasis.opendocument.spreadsheet", "application/zip", (), "container"),
    ("application/zip", "application/epub+zip", (), "container"),
    ("application/x-zip-compressed", "application/zip", (), "equal"),
    ("application/vnd.ms-excel", "application/msword", (), "container"),
    ("video/quicktime", "video/mp4", (), "container"),
    ("video/x-matroska", "video/webm", (), "container"),
    ("application/zip", "image/png", ("image/png",), None),
    ("video/mp4", "image/png", ("image/png",), None),
    # nothing recognised
    ("application/pdf", None, (), None),
    ("image/png", None, (), None),
    ("image/jpeg", None, (), None),
    ("image/gif", None, (), None),
    ("application/zip", None, (), None),
    ("video/mp4", None, (), None),
    ("text/plain", None, (), "unknown"),
    ("text/csv", None, (), "unknown"),
    ("application/x-custom-format", None, (), "unknown"),
    ("audio/mpeg", None, (), "unknown"),  # an MP3 need not start with a signature
    # "arbitrary binary data" claims nothing
    ("application/octet-stream", "image/png", ("image/png",), "unspecified"),
    ("application/octet-stream", None, (), "unspecified"),
]


@pytest.mark.parametrize(("declared", "detected", "candidates", "rule"), CASES)
def test_compatibility(
    declared: str, detected: str | None, candidates: tuple[str, ...], rule: str | None
) -> None:
    assert compatibility(declared, detected, candidates) == rule
    assert compatible(declared, detected, candidates) is (rule is not None)


@pytest.mark.parametrize(
    "media",
    ["application/pdf", "image/png", "image/jpeg", "image/gif", "application/zip", "video/mp4"],
)
def test_types_with_a_signature_are_recognisable(media: str) -> None:
    assert recognisable(media)


@pytest.mark.parametrize(
    "media",
    ["text/plain", "text/csv", "application/json", "image/svg+xml", "audio/mpeg", "x/unknown"],
)
def test_text_weak_and_unknown_signatures_are_not(media: str) -> None:
    assert not recognisable(media)


def test_normalize_drops_parameters_and_case_and_picks_one_name() -> None:
    assert normalize(" Image/JPG ; q=1") == "image/jpeg"
    assert normalize("text/plain; charset=utf-8") == "text/plain"


# -- sniff --------------------------------------------------------------------------------------


def test_a_png_is_a_png() -> None:
    found = sniff(PNG)
    assert found.content_type == "image/png"
    assert found.candidates == ("image/png",)
    assert found.sniffed_bytes == len(PNG)


def test_a_pdf_is_a_pdf_with_its_candidates() -> None:
    found = sniff(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(100))
    assert found.content_type == "application/pdf"
    assert "application/vnd.fdf" in found.candidates


def test_a_zip_is_a_zip_and_may_be_any_zip_based_format() -> None:
    found = sniff(zipped(("a.txt", "hi")))
    assert found.content_type == "application/zip"  # not the first of equally likely ones
    assert DOCX in found.candidates


def test_an_epub_says_so_in_its_first_bytes() -> None:
    found = sniff(zipped(("mimetype", "application/epub+zip"), ("a.xhtml", "<x/>")))
    assert found.content_type == "application/epub+zip"


def test_utf8_text_is_plain_text_even_when_cut_in_a_character() -> None:
    text = "naïve café, 東京".encode()
    assert sniff(text).content_type == "text/plain"
    cut = text[:-1]  # the last character is three bytes: two are left
    assert sniff(cut).content_type == "text/plain"
    assert sniff(cut, whole=True).content_type is None  # the whole object: no excuse


@pytest.mark.parametrize(
    "data",
    [b"text with a \x00 in it", bytes(range(256)), b"caf\xe9 in latin-1 \xff\xfe"],
    ids=["nul", "binary", "latin-1"],
)
def test_bytes_of_no_known_type(data: bytes) -> None:
    assert sniff(data) == Detection(None, sniffed_bytes=len(data))


def test_nothing_is_of_no_known_type() -> None:
    assert sniff(b"").content_type is None


def test_signatures_at_the_end_count_only_for_the_whole_object() -> None:
    data = b"some text and then </svg>"
    assert sniff(data, whole=True).content_type == "image/svg+xml"
    assert sniff(data).content_type == "text/plain"


def test_a_whole_json_document_is_json() -> None:
    assert sniff(b'{"name": "value"}', whole=True).content_type == "application/json"


# -- policy -------------------------------------------------------------------------------------


def check(tmp_path: Path, declared: str, data: bytes, **overrides: object) -> str | None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///unused.db", **overrides)
    return policy.check(settings, declared, sniff(data))


def test_off_judges_nothing(tmp_path: Path) -> None:
    options = {"content_type_check": "off", "allowed_content_types": "application/pdf"}
    assert check(tmp_path, "application/pdf", PNG, **options) is None


def test_allow_list_judges_nothing_when_every_type_is_allowed(tmp_path: Path) -> None:
    assert check(tmp_path, "application/pdf", PNG) is None


def test_allow_list_wants_the_declared_type(tmp_path: Path) -> None:
    options = {"allowed_content_types": "application/pdf,text/*"}
    assert check(tmp_path, "application/pdf", PNG, **options) == (
        "content_type_mismatch: declared application/pdf, but the bytes are image/png"
    )
    assert check(tmp_path, "application/pdf", bytes(range(256)), **options) == (
        "content_type_mismatch: declared application/pdf, but the bytes are of no known type"
    )
    assert check(tmp_path, "text/csv", b"a,b\n1,2\n", **options) is None
    assert check(tmp_path, "text/csv", b"a,caf\xe9\n", **options) is None  # latin-1: unknown


def test_allow_list_wants_an_allowed_type_of_bytes(tmp_path: Path) -> None:
    options = {"allowed_content_types": "text/plain"}
    html = b"<!DOCTYPE html><html><body>hi</body></html>"
    assert check(tmp_path, "text/plain", html, **options) == (
        "content_type_not_allowed: the bytes are text/html, which is not accepted"
    )


def test_allow_list_takes_a_zip_for_a_zip_based_type(tmp_path: Path) -> None:
    options = {"allowed_content_types": DOCX}
    docx = zipped(("[Content_Types].xml", "<x/>"), ("word/document.xml", "<x/>"))
    assert check(tmp_path, DOCX, docx, **options) is None
    assert check(tmp_path, DOCX, PNG, **options) == (
        f"content_type_mismatch: declared {DOCX}, but the bytes are image/png"
    )


def test_allow_list_matches_any_name_of_a_type(tmp_path: Path) -> None:
    wav = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40)
    assert check(tmp_path, "audio/wav", wav, allowed_content_types="audio/wav") is None


def test_strict_wants_the_declared_type_always(tmp_path: Path) -> None:
    assert check(tmp_path, "video/mp4", PNG, content_type_check="strict") == (
        "content_type_mismatch: declared video/mp4, but the bytes are image/png"
    )
    assert check(tmp_path, "image/png", PNG, content_type_check="strict") is None
