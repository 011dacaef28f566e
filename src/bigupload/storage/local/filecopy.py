"""Copying bytes from one file into another inside the kernel: ``copy_file_range`` (a reflink
or an in-kernel copy, the bytes never cross into the process), else ``sendfile``, else reads
and writes through one bounded buffer, for file systems and kernels that refuse the first two.

:func:`copy` copies an exact number of bytes between explicit offsets, so a method that gives
up part-way is taken over by the next one from where it stopped. Blocking: call it in a worker
thread.
"""

from __future__ import annotations

import errno
import os

#: Bytes asked of the kernel per call: large calls, few of them; memory is not involved.
KERNEL_CHUNK = 64 * 1024 * 1024
#: The buffer of the last resort, reads and writes.
BUFFER = 1024 * 1024
#: The errors that say "this method does not work for these files", not "the copy failed".
UNSUPPORTED = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EBADF}
)


class Truncated(OSError):
    """The source ended before the bytes asked for."""


def copy(src: int, dst: int, count: int, *, src_offset: int = 0, dst_offset: int = 0) -> str:
    """Copy ``count`` bytes of file descriptor ``src`` from ``src_offset`` to ``dst`` at
    ``dst_offset``; answer the last method used (``"copy_file_range"``, ``"sendfile"`` or
    ``"readwrite"``). :class:`Truncated` if ``src`` holds fewer bytes."""
    done = 0
    for name, method in (("copy_file_range", _copy_file_range), ("sendfile", _sendfile)):
        try:
            while done < count:
                moved = method(
                    src, dst, min(KERNEL_CHUNK, count - done), src_offset + done, dst_offset + done
                )
                if moved == 0:
                    raise Truncated(f"the source ended after {done} of {count} bytes")
                done += moved
            return name
        except OSError as exc:
            if isinstance(exc, Truncated) or exc.errno not in UNSUPPORTED:
                raise
    _read_write(src, dst, count - done, src_offset + done, dst_offset + done)
    return "readwrite"


def _copy_file_range(src: int, dst: int, count: int, src_offset: int, dst_offset: int) -> int:
    if not hasattr(os, "copy_file_range"):
        raise OSError(errno.ENOSYS, "no copy_file_range on this platform")
    return os.copy_file_range(src, dst, count, src_offset, dst_offset)


def _sendfile(src: int, dst: int, count: int, src_offset: int, dst_offset: int) -> int:
    # sendfile writes at the destination's position: place it first.
    os.lseek(dst, dst_offset, os.SEEK_SET)
    return os.sendfile(dst, src, src_offset, count)


def _read_write(src: int, dst: int, count: int, src_offset: int, dst_offset: int) -> None:
    buffer = bytearray(min(BUFFER, max(count, 1)))
    view = memoryview(buffer)
    done = 0
    while done < count:
        want = min(len(buffer), count - done)
        got = os.preadv(src, [view[:want]], src_offset + done)
        if got == 0:
            raise Truncated(f"the source ended after {done} of {count} bytes")
        written = 0
        while written < got:
            written += os.pwrite(dst, view[written:got], dst_offset + done + written)
        done += got
