"""Atomic writes: whole or nothing, with the user's normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from mathtune.files import atomic_dir, atomic_write_text, read_jsonl


def test_atomic_write_replaces_and_uses_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a" / "f.txt", "one")
        atomic_write_text(p, "two")
    finally:
        os.umask(old)
    assert p.read_text() == "two"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]  # no temp files left


def test_atomic_dir_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.bin").write_text("x")
        raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "whole.bin").write_text("x")
    assert (target / "whole.bin").is_file()


def test_read_jsonl_reports_bad_lines_by_number(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\nnot json\n\n[1, 2]\n{"b": 2}\n')
    rows = list(read_jsonl(p))
    assert [(n, r, e is not None) for n, r, e in rows] == [
        (1, {"a": 1}, False), (2, None, True), (4, None, True), (5, {"b": 2}, False)]
