"""How a file is cut into parts: the client's preference, within S3's limits.

Like s3transfer's ``ChunksizeAdjuster``, but rounding up to whole MiB instead of doubling, so a
5 TiB file gets 525 MiB parts (10,000 of them at most) rather than 1 GiB ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from bigupload.storage.base import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE

MiB = 1024 * 1024


class PartNumberOutOfRange(ValueError):
    """The part number is not one of the file's."""


@dataclass(frozen=True, slots=True)
class PartSizer:
    default_part_size: int = 16 * MiB
    min_part_size: int = MIN_PART_SIZE
    max_part_size: int = MAX_PART_SIZE
    max_parts: int = MAX_PARTS

    def part_size(self, size: int, preferred: int | None = None) -> int:
        """The part size for a file of ``size`` bytes; ``preferred`` is honoured if it can be."""
        if size <= 0:
            raise ValueError("size must be positive")
        if size > self.max_part_size * self.max_parts:
            raise ValueError("the file cannot be cut into parts within the store's limits")
        part = preferred if preferred is not None else self.default_part_size
        part = min(max(part, self.min_part_size), self.max_part_size)
        if -(-size // part) > self.max_parts:
            at_least = -(-size // self.max_parts)
            part = min(-(-at_least // MiB) * MiB, self.max_part_size)
            if -(-size // part) > self.max_parts:  # the last MiB of headroom was not there
                part = at_least
        return part

    @staticmethod
    def part_count(size: int, part_size: int) -> int:
        return max(1, -(-size // part_size))

    @staticmethod
    def part_length(size: int, part_size: int, part_number: int) -> int:
        """The exact length of part ``part_number`` (1-based): ``part_size`` but for the last."""
        count = PartSizer.part_count(size, part_size)
        if not 1 <= part_number <= count:
            raise PartNumberOutOfRange(f"part numbers run from 1 to {count}")
        if part_number < count:
            return part_size
        return size - part_size * (count - 1)
