"""The rows an evaluation keeps as it goes, and what --resume reads back (evaluation/progress.py)."""

from __future__ import annotations

import json
import os

import pytest

from evaluation.progress import RowStore, partial_path, row_key

A = row_key("ab12", "real", 0, "cpu", "a.png", "d1")
B = row_key("ab12", "real", 0, "cpu", "b.png", "d2")


def rows_in(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_rows_come_back_on_resume_and_the_file_goes_when_the_run_finishes(tmp_path):
    out = tmp_path / "r.json"
    store = RowStore(out, resume=False)
    store.add(A, {"image": "a.png", "bpp": 0.5})
    store.close(finished=False)
    resumed = RowStore(out, resume=True)
    assert resumed.done == {A: {"image": "a.png", "bpp": 0.5}} and resumed.match([A, B]) == (1, [])
    resumed.add(B, {"image": "b.png", "bpp": 0.7})
    resumed.close(finished=False)
    assert [tuple(r["key"]) for r in rows_in(partial_path(out))] == [A, B]
    RowStore(out, resume=True).close(finished=True)
    assert not partial_path(out).exists()


def test_resume_leaves_out_lines_that_are_not_rows_with_one_note(tmp_path, capsys):
    """Bytes that are not UTF-8, rows of another shape, a line cut short: each left out, no traceback."""
    out = tmp_path / "r.json"
    good = json.dumps({"key": list(A), "row": {"image": "a.png", "bpp": 0.5}}).encode()
    partial_path(out).write_bytes(b"\n".join([good, b"\xff\xfe\x80 not UTF-8", b'{"key": [1, 2], "row": {}}',
                                              b'{"key": [[1], "a", 0, "cpu", "x", "d"], "row": {}}', b'{"key": ["ab']))
    store = RowStore(out, resume=True)
    assert store.done == {A: {"image": "a.png", "bpp": 0.5}}
    assert capsys.readouterr().err.splitlines() == [
        f"note: 4 line(s) of {partial_path(out)} are not rows (cut short by a kill, or not written by eval.py): "
        "left out, their images evaluated again"]
    store.add(B, {"image": "b.png", "bpp": 0.7})
    store.close(finished=False)
    assert [tuple(r["key"]) for r in rows_in(partial_path(out))] == [A, B]  # the file holds rows only now


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_at_the_rows_file_is_replaced_never_written_through(tmp_path, resume, link):
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(b"precious\n")
    out = tmp_path / "r.json"
    os.symlink(victim, partial_path(out)) if link == "symbolic" else os.link(victim, partial_path(out))
    store = RowStore(out, resume=resume)
    store.add(A, {"image": "a.png", "bpp": 0.5})
    store.close(finished=False)
    assert victim.read_bytes() == b"precious\n"
    assert not partial_path(out).is_symlink() and [tuple(r["key"]) for r in rows_in(partial_path(out))] == [A]
