"""``content_disposition``: any filename, carried safely (RFC 6266, RFC 5987)."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from bigupload.storage.disposition import content_disposition

_PARAM = re.compile(r';[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=("(?:[^"\\]|\\.)*"|[^;\s"]*)')


def parameters(value: str) -> dict[str, str]:
    """The parameters of a ``Content-Disposition`` value, parsed as RFC 6266 says."""
    kind, semicolon, rest = value.partition(";")
    assert kind in ("attachment", "inline")
    rest = semicolon + rest
    params: dict[str, str] = {}
    at = 0
    while at < len(rest):
        match = _PARAM.match(rest, at)
        assert match is not None, f"unparsable from {rest[at:]!r}"
        assert match[1] not in params
        params[match[1]] = match[2]
        at = match.end()
    return params


def filename_seen_by_a_parser(value: str) -> str:
    """The name a user agent picks: ``filename*`` when present (RFC 6266 4.3), else ``filename``."""
    params = parameters(value)
    assert set(params) <= {"filename", "filename*"}
    if "filename*" in params:
        charset, _, encoded = params["filename*"].partition("''")
        assert charset == "UTF-8"
        return unquote(encoded, errors="strict")
    quoted = params["filename"]
    assert quoted.startswith('"') and quoted.endswith('"')
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def test_an_ascii_name_is_quoted_as_is() -> None:
    assert content_disposition("report-2026.pdf") == 'attachment; filename="report-2026.pdf"'


def test_inline_is_asked_for() -> None:
    assert content_disposition("a b.txt", inline=True) == 'inline; filename="a b.txt"'


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            'say "hi".txt',
            "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt",
        ),
        (
            "back\\slash.txt",
            "attachment; filename=\"back_slash.txt\"; filename*=UTF-8''back%5Cslash.txt",
        ),
        (
            'a"; filename="evil.exe',
            'attachment; filename="a_; filename=_evil.exe"; '
            "filename*=UTF-8''a%22%3B%20filename%3D%22evil.exe",
        ),
    ],
    ids=["quotes", "backslash", "parameter-injection"],
)
def test_quotes_and_backslashes_never_reach_the_quoted_string(name: str, expected: str) -> None:
    assert content_disposition(name) == expected
    assert filename_seen_by_a_parser(expected) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "résumé.pdf",
            "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        ),
        (
            "re\u0301sume\u0301.pdf",  # decomposed: the accents are combining marks
            "attachment; filename=\"resume.pdf\"; filename*=UTF-8''re%CC%81sume%CC%81.pdf",
        ),
        ("報告.pdf", "attachment; filename=\"__.pdf\"; filename*=UTF-8''%E5%A0%B1%E5%91%8A.pdf"),
        (
            "Straße 😀.txt",
            'attachment; filename="Stra_e _.txt"; '
            "filename*=UTF-8''Stra%C3%9Fe%20%F0%9F%98%80.txt",
        ),
        (
            'résumé "final".pdf',
            'attachment; filename="resume _final_.pdf"; '
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf",
        ),
    ],
    ids=["accents", "decomposed", "cjk", "eszett-emoji", "accents-and-quotes"],
)
def test_a_non_ascii_name_gets_an_ascii_fallback_and_the_exact_name(
    name: str, expected: str
) -> None:
    assert content_disposition(name) == expected
    assert filename_seen_by_a_parser(expected) == name


@pytest.mark.parametrize(
    ("name", "fallback", "encoded"),
    [
        ("a\nb.txt", "a_b.txt", "a%0Ab.txt"),
        ("a\r\nSet-Cookie: x=1", "a__Set-Cookie: x=1", "a%0D%0ASet-Cookie%3A%20x%3D1"),
        ("nul\x00.txt", "nul_.txt", "nul%00.txt"),
        ("tab\t.txt", "tab_.txt", "tab%09.txt"),
        ("del\x7f.txt", "del_.txt", "del%7F.txt"),
    ],
    ids=["newline", "header-injection", "nul", "tab", "del"],
)
def test_control_characters_never_reach_the_header(name: str, fallback: str, encoded: str) -> None:
    value = content_disposition(name)
    assert value == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    assert all(0x20 <= ord(ch) < 0x7F for ch in value)
    assert filename_seen_by_a_parser(value) == name


def test_an_empty_name_becomes_download() -> None:
    assert content_disposition("") == 'attachment; filename="download"'
    assert filename_seen_by_a_parser(content_disposition("")) == "download"


def test_a_name_of_only_unrepresentable_characters_keeps_placeholders() -> None:
    assert (
        content_disposition("中文")
        == "attachment; filename=\"__\"; filename*=UTF-8''%E4%B8%AD%E6%96%87"
    )


@pytest.mark.parametrize(
    "name",
    ["plain.txt", 'q"uote', "b\\ack", "é", "中文.bin", "a\nb", "100% sure;.txt", "x" * 300, ""],
)
def test_every_header_is_printable_ascii_and_names_the_file(name: str) -> None:
    value = content_disposition(name)
    assert value.isascii() and value.isprintable()
    assert value.startswith("attachment; filename=")
    assert filename_seen_by_a_parser(value) == (name or "download")
