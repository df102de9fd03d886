"""kubik_core.common.atomic: the one atomic write every capability uses."""
from __future__ import annotations

import os
import stat

import pytest

from kubik_core.common.atomic import atomic_path, write_bytes_atomic, write_text_atomic


def test_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "notes.json"          # the folder is created
    write_text_atomic(target, "first")
    assert write_text_atomic(target, "é second") == target
    assert target.read_text(encoding="utf-8") == "é second"
    assert os.listdir(target.parent) == ["notes.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "model.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")         # fails inside the write
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_atomic_path_hands_a_sibling_and_renames_it(tmp_path):
    target = tmp_path / "image.png"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".image.png.")
        assert not target.exists()                      # nothing visible until the block ends
        temporary.write_bytes(b"png")
    assert target.read_bytes() == b"png" and os.listdir(tmp_path) == ["image.png"]


def test_new_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "a", b"x")
        with atomic_path(tmp_path / "b") as temporary:
            temporary.write_bytes(b"x")
    finally:
        os.umask(old)
    for name in ("a", "b"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
