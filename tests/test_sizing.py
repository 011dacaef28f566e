"""The part sizing rules: the preference, within S3's limits, never more than 10,000 parts."""

from __future__ import annotations

import pytest

from bigupload.uploads.sizing import PartNumberOutOfRange, PartSizer

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB

sizer = PartSizer()


@pytest.mark.parametrize(
    ("size", "preferred", "expected"),
    [
        (1, None, 16 * MiB),  # the default; one short part
        (200 * MiB, None, 16 * MiB),
        (200 * MiB, 64 * MiB, 64 * MiB),
        (200 * MiB, 1, 5 * MiB),
        (200 * MiB, 5 * MiB - 1, 5 * MiB),
        (200 * MiB, 6 * GiB, 5 * GiB),
        (160_000 * MiB, 16 * MiB, 16 * MiB),  # exactly 10,000 parts
        (160_000 * MiB + 1, 16 * MiB, 17 * MiB),  # one byte more: bigger parts, whole MiB
        (5 * TiB, None, 525 * MiB),
        (5 * TiB, 5 * GiB, 5 * GiB),
    ],
)
def test_part_size(size: int, preferred: int | None, expected: int) -> None:
    assert sizer.part_size(size, preferred) == expected


@pytest.mark.parametrize("size", [1, 5 * MiB, 77 * GiB + 3, 5 * TiB, 10_000 * 5 * GiB])
@pytest.mark.parametrize("preferred", [None, 1, 8 * MiB, 5 * GiB])
def test_every_size_fits_the_limits(size: int, preferred: int | None) -> None:
    part = sizer.part_size(size, preferred)
    count = sizer.part_count(size, part)
    assert 5 * MiB <= part <= 5 * GiB
    assert 1 <= count <= 10_000
    lengths = [sizer.part_length(size, part, n) for n in (1, count)]
    assert sum(lengths[:1]) * (count - 1) + lengths[-1] == size
    assert 0 < lengths[-1] <= part


def test_part_lengths_add_up() -> None:
    size, part = 23 * MiB + 5, 5 * MiB
    count = sizer.part_count(size, part)
    assert count == 5
    assert [sizer.part_length(size, part, n) for n in range(1, count + 1)] == [part] * 4 + [
        3 * MiB + 5
    ]


@pytest.mark.parametrize("number", [0, -1, 6])
def test_part_numbers_outside_the_file_are_refused(number: int) -> None:
    with pytest.raises(PartNumberOutOfRange):
        sizer.part_length(23 * MiB, 5 * MiB, number)


@pytest.mark.parametrize("size", [0, -1, 10_000 * 5 * GiB + 1])
def test_sizes_that_cannot_be_cut_are_refused(size: int) -> None:
    with pytest.raises(ValueError):
        sizer.part_size(size)
