"""The committed build of the web page is whole and made from the current sources of ``web/``.

``npm run build`` (``make web``) writes ``build-info.json`` beside the page with the digest of the
sources it was built from. The digest, computed the same way here and in ``web/vite.config.js``:
every file under ``web/`` except ``node_modules/``, by its POSIX path relative to ``web/``, sorted;
for each the line ``path + "\\0" + hex(sha256(bytes)) + "\\n"``; the digest is the hex SHA-256 of
all the lines concatenated.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from bigupload.web.endpoints import ASSETS_DIR, STATIC_DIR

WEB = Path(__file__).resolve().parents[2] / "web"
REBUILD = "the committed web page is older than web/: run make web (and commit the build)"


def sources_digest(root: Path) -> str:
    paths = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] != "node_modules"
    )
    lines = b"".join(
        f"{path}\0{hashlib.sha256((root / path).read_bytes()).hexdigest()}\n".encode()
        for path in paths
    )
    return hashlib.sha256(lines).hexdigest()


def test_the_committed_build_is_made_from_the_current_sources() -> None:
    info_path = STATIC_DIR / "build-info.json"
    assert info_path.is_file(), f"{info_path} is missing: run make web"
    info = json.loads(info_path.read_text())
    assert info["sources_sha256"] == sources_digest(WEB), REBUILD


def test_the_digest_sees_every_source_file_but_node_modules(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.js").write_text("one")
    (tmp_path / "index.html").write_text("<p>")
    before = sources_digest(tmp_path)
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "index.js").write_text("ignored")
    assert sources_digest(tmp_path) == before
    (tmp_path / "src" / "main.js").write_text("two")
    assert sources_digest(tmp_path) != before
    # A known value: the same algorithm as web/vite.config.js, line for line.
    (tmp_path / "src" / "main.js").write_text("one")
    lines = (
        f"index.html\0{hashlib.sha256(b'<p>').hexdigest()}\n"
        f"src/main.js\0{hashlib.sha256(b'one').hexdigest()}\n"
    )
    assert sources_digest(tmp_path) == hashlib.sha256(lines.encode()).hexdigest()


def test_the_page_references_only_assets_that_exist() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    references = re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', html)
    scripts = [ref for ref in references if ref.endswith(".js")]
    styles = [ref for ref in references if ref.endswith(".css")]
    assert scripts and styles, references
    for ref in references:
        assert ref.startswith("/") and not ref.startswith("//"), f"{ref}: not served by bigupload"
        assert (STATIC_DIR / ref.lstrip("/")).is_file(), f"{ref} is not in the build: run make web"
    for ref in scripts + styles:
        assert ref.startswith("/assets/"), ref


def test_the_styles_load_nothing_from_elsewhere() -> None:
    for css in ASSETS_DIR.glob("*.css"):
        urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text())
        remote = [url for url in urls if not url.startswith(("data:", "/", "#"))]
        assert remote == [], f"{css.name} loads {remote}"
