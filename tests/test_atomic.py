"""Files written atomically: whole or not at all, with the permissions the user's umask gives."""

from __future__ import annotations

import os
import stat

import pytest

from iconolens.atomic import write_bytes_atomically, write_json_atomically


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_get_the_umask_permissions(tmp_path, mask):
    previous = os.umask(mask)
    try:
        path = write_bytes_atomically(tmp_path / "report.html", b"<p>hi</p>")
        # What open() gives a new file under the same umask is the reference.
        with open(tmp_path / "plain.html", "wb"):
            pass
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.html").stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_json_atomically(tmp_path / "a.json", {"x": 1})

    def broken(handle):
        handle.write(b"{half")
        raise OSError("disk full")

    from iconolens.atomic import write_atomically

    with pytest.raises(OSError):
        write_atomically(path, broken)
    assert path.read_text(encoding="utf-8") == '{\n  "x": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_an_array_is_written_as_npy_that_numpy_reads_back_without_pickle(tmp_path) -> None:
    import numpy as np
    import pytest

    from iconolens.atomic import write_array_atomically

    values = np.arange(12, dtype=np.float16).reshape(3, 4)
    path = write_array_atomically(tmp_path / "a.npy", values)
    back = np.load(path, allow_pickle=False)
    assert back.dtype == np.float16 and (back == values).all()
    with pytest.raises(ValueError):
        write_array_atomically(tmp_path / "b.npy", np.array([{"not": "numbers"}], dtype=object))
    assert not (tmp_path / "b.npy").exists()
