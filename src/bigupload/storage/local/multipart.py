"""Multipart uploads on the local store: one directory per upload in progress, under a lock.

Layout under ``<root>/multipart/``::

    <id>/upload.json        the key, content type, whether parts carry a SHA-256, when begun
    <id>/lock               flock'd: exclusively to change the upload, shared to read it
    <id>/parts/<n>.json     part ``n``: size, ETag, SHA-256 and the name of the file of its bytes
    <id>/parts/<n>-<hex>    those bytes

An upload's directory is built in ``tmp/`` and renamed into place, so it exists whole or not at
all; completing or aborting renames it back out of ``multipart/`` (under the exclusive lock)
before deleting it. A caller that was waiting for the lock then finds no ``upload.json`` and
answers :class:`UploadNotFound`: of two racing completes, one makes the object.

A part's bytes get a fresh name each time it is uploaded and its JSON is replaced atomically,
so a part is always the bytes its JSON describes; the bytes it replaced are deleted, and any
left over by a crash go with the directory.

Upload ids are 32 random hex digits, plus ``-sha256`` when every part must carry its SHA-256:
signing (which must not touch the disk) can then refuse a part without one. Every id is checked
against :data:`UPLOAD_ID` before it names a path.

These functions block (disk, locks): the store calls them in worker threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from bigupload.storage.base import (
    MIN_PART_SIZE,
    CompletedPart,
    MultipartUpload,
    PartsRejected,
    StorageError,
    StoredPart,
    UploadNotFound,
)
from bigupload.storage.local import filecopy, tmpfiles

#: Every upload id this store hands out, and the only ones it accepts.
UPLOAD_ID = re.compile(r"[0-9a-f]{32}(-sha256)?")
_CHECKSUM_SUFFIX = "-sha256"
_PART_FILE = re.compile(r"[1-9][0-9]{0,4}-[0-9a-f]{32}")


def new_upload_id(*, checksum_sha256: bool) -> str:
    return uuid.uuid4().hex + (_CHECKSUM_SUFFIX if checksum_sha256 else "")


def is_upload_id(value: str) -> bool:
    return UPLOAD_ID.fullmatch(value) is not None


def requires_checksum(upload_id: str) -> bool:
    """Whether the upload was begun with ``checksum_sha256`` (the id says so)."""
    return upload_id.endswith(_CHECKSUM_SUFFIX)


def multipart_etag(md5_hex_digests: Sequence[str]) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, and their count."""
    joined = b"".join(bytes.fromhex(digest) for digest in md5_hex_digests)
    digest = hashlib.md5(joined).hexdigest()  # noqa: S324  (S3's ETag, not a security digest)
    return f'"{digest}-{len(md5_hex_digests)}"'


def _unquoted(etag: str) -> str:
    return etag.strip().strip('"')


@dataclass(frozen=True, slots=True)
class PartRecord:
    number: int
    size: int
    etag: str  # quoted
    checksum_sha256: str | None  # base64
    file: str
    last_modified: str

    def stored(self) -> StoredPart:
        return StoredPart(
            part_number=self.number,
            size=self.size,
            etag=self.etag,
            checksum_sha256=self.checksum_sha256,
            last_modified=datetime.fromisoformat(self.last_modified),
        )


@dataclass(frozen=True, slots=True)
class Assembled:
    """The joined bytes in ``tmp/``, fsynced, and S3's ETag of them (their SHA-256 is computed
    when asked for, see :meth:`LocalStorage.stat`)."""

    path: Path
    #: Open and locked until the caller discards it (see :mod:`.tmpfiles`).
    handle: IO[bytes]
    size: int
    etag: str


class OpenUpload:
    """An upload in progress, its lock held (see :meth:`Uploads.locked`)."""

    def __init__(self, uploads: Uploads, upload_id: str, info: dict[str, Any]) -> None:
        self.uploads = uploads
        self.upload_id = upload_id
        self.directory = uploads.root / upload_id
        self.parts_dir = self.directory / "parts"
        self.key: str = info["key"]
        self.content_type: str = info["content_type"]
        self.checksum_sha256: bool = bool(info["checksum_sha256"])

    def parts(self) -> dict[int, PartRecord]:
        records: dict[int, PartRecord] = {}
        for path in self.parts_dir.glob("*.json"):
            try:
                raw = json.loads(path.read_text())
                record = PartRecord(**raw)
            except (OSError, ValueError, TypeError):
                continue  # not a part's JSON (or a torn one): skip it, as S3 would not list it
            if _PART_FILE.fullmatch(record.file) and path.stem == str(record.number):
                records[record.number] = record
        return records

    def put_part(self, number: int, bytes_path: Path, record_fields: dict[str, Any]) -> PartRecord:
        """Move the part's bytes (in ``tmp/``) into place; an earlier upload of it is dropped."""
        file = f"{number}-{uuid.uuid4().hex}"
        record = PartRecord(number=number, file=file, **record_fields)
        json_path = self.parts_dir / f"{number}.json"
        previous = self.parts().get(number)
        os.replace(bytes_path, self.parts_dir / file)
        json_tmp = self.uploads.tmp / (uuid.uuid4().hex + ".json")
        try:
            json_tmp.write_text(json.dumps(_record_json(record)))
            os.replace(json_tmp, json_path)
        except BaseException:  # a full disk: the part stays as it was before
            for path in (json_tmp, self.parts_dir / file):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        if previous is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.parts_dir / previous.file).unlink()
        return record

    def choose(self, named: Sequence[CompletedPart]) -> list[PartRecord]:
        """The stored parts ``named`` designates, refused as S3 refuses them."""
        if not named:
            raise PartsRejected("InvalidRequest", "You must specify at least one part")
        previous = 0
        for part in named:
            if part.part_number <= previous:
                raise PartsRejected(
                    "InvalidPartOrder", "parts must be named by strictly ascending number"
                )
            previous = part.part_number
        stored = self.parts()
        chosen = []
        last = len(named) - 1
        for index, part in enumerate(named):
            record = stored.get(part.part_number)
            if record is None or _unquoted(record.etag) != _unquoted(part.etag):
                raise PartsRejected(
                    "InvalidPart",
                    f"part {part.part_number} was not uploaded, or its ETag differs",
                )
            if self.checksum_sha256 and part.checksum_sha256 is None:
                raise PartsRejected(
                    "InvalidRequest",
                    f"the upload takes SHA-256 checksums: part {part.part_number} names none",
                )
            if part.checksum_sha256 is not None and part.checksum_sha256 != record.checksum_sha256:
                raise PartsRejected(
                    "InvalidPart", f"part {part.part_number}'s SHA-256 differs from the named one"
                )
            if index < last and record.size < MIN_PART_SIZE:
                raise PartsRejected(
                    "EntityTooSmall",
                    f"part {part.part_number} has {record.size} bytes: every part but the last "
                    f"must have at least {MIN_PART_SIZE}",
                )
            chosen.append(record)
        return chosen

    def assemble(self, chosen: Sequence[PartRecord]) -> Assembled:
        """Join the parts into a new file in ``tmp/``, copied inside the kernel (see
        :mod:`.filecopy`): the bytes are neither read into the process nor hashed again."""
        out, path = tmpfiles.create(self.uploads.tmp)
        size = 0
        try:
            for record in chosen:
                with (self.parts_dir / record.file).open("rb") as source:
                    held = os.fstat(source.fileno()).st_size
                    if held != record.size:
                        raise StorageError(
                            f"part {record.number} holds {held} bytes, {record.size} recorded"
                        )
                    filecopy.copy(source.fileno(), out.fileno(), held, dst_offset=size)
                size += held
            os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                out.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        etag = multipart_etag([_unquoted(record.etag) for record in chosen])
        return Assembled(path, out, size, etag)

    def remove(self) -> None:
        """End the upload: out of ``multipart/`` at once (a rename), then deleted."""
        trash = self.uploads.tmp / (uuid.uuid4().hex + ".removed")
        os.rename(self.directory, trash)
        shutil.rmtree(trash, ignore_errors=True)


class Uploads:
    """The uploads in progress under ``root`` (``<store>/multipart``)."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp

    def create(self, key: str, *, content_type: str, checksum_sha256: bool, now: datetime) -> str:
        upload_id = new_upload_id(checksum_sha256=checksum_sha256)
        staging = self.tmp / (upload_id + ".new")
        info = {
            "key": key,
            "content_type": content_type,
            "checksum_sha256": checksum_sha256,
            "initiated": now.isoformat(),
        }
        try:
            staging.mkdir()
            (staging / "parts").mkdir()
            (staging / "lock").touch()
            (staging / "upload.json").write_text(json.dumps(info))
            os.rename(staging, self.root / upload_id)
        except BaseException:  # a full disk: no half-built upload is left in tmp/
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return upload_id

    @contextlib.contextmanager
    def locked(self, key: str, upload_id: str, *, exclusive: bool) -> Iterator[OpenUpload]:
        """The upload, its lock held; :class:`UploadNotFound` unless it is in progress for
        ``key``. Blocks while another holder has the lock."""
        if not is_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        directory = self.root / upload_id
        try:
            fd = os.open(directory / "lock", os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(upload_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            # The holder before us may have completed or aborted the upload.
            info = self._info(directory)
            if info is None or info.get("key") != key:
                raise UploadNotFound(upload_id)
            yield OpenUpload(self, upload_id, info)
        finally:
            os.close(fd)  # releases the lock

    def info(self, key: str, upload_id: str) -> OpenUpload:
        """The upload, without its lock: for a quick check before a part's bytes arrive."""
        if not is_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        info = self._info(self.root / upload_id)
        if info is None or info.get("key") != key:
            raise UploadNotFound(upload_id)
        return OpenUpload(self, upload_id, info)

    def in_progress(self, prefix: str) -> list[MultipartUpload]:
        found = []
        for entry in os.scandir(self.root):
            if not is_upload_id(entry.name):
                continue
            info = self._info(Path(entry.path))
            if info is None or not str(info.get("key", "")).startswith(prefix):
                continue
            found.append(
                MultipartUpload(
                    key=info["key"],
                    upload_id=entry.name,
                    initiated=datetime.fromisoformat(info["initiated"]),
                )
            )
        found.sort(key=lambda u: (u.initiated, u.key, u.upload_id))
        return found

    @staticmethod
    def _info(directory: Path) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = json.loads((directory / "upload.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return info


def _record_json(record: PartRecord) -> dict[str, Any]:
    return {
        "number": record.number,
        "size": record.size,
        "etag": record.etag,
        "checksum_sha256": record.checksum_sha256,
        "file": record.file,
        "last_modified": record.last_modified,
    }
