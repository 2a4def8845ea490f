"""The small-file helpers of the per-call paths behave as the built-ins they replace."""

import os

import pytest

from netplug.fileio import ensure_dir, read_small


@pytest.mark.parametrize("size", [0, 10, 65535, 65536, 65537, 200_000])
def test_read_small_reads_whole_files(tmp_path, size):
    p = tmp_path / "f"
    p.write_text("é" * (size // 2) + "x" * (size % 2))
    assert read_small(str(p)) == p.read_text()


def test_read_small_raises_like_open(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_small(str(tmp_path / "missing"))


def test_ensure_dir_makes_parents_and_accepts_existing(tmp_path):
    d = tmp_path / "a" / "b"
    ensure_dir(str(d), 0o700)
    ensure_dir(str(d), 0o700)
    assert d.is_dir() and (os.stat(d).st_mode & 0o777) == 0o700
