"""invfast.core.runtime.outputs: files and folders appear whole or not at all."""

from __future__ import annotations

import json
import os
import stat

import pytest

from invfast.core.runtime import outputs


def fill_with(name: str, text: str):
    def fill(folder):
        (folder / name).write_text(text)

    return fill


def write(out, fill, **kwargs):
    with outputs.output_folder(out, **kwargs) as folder:
        fill(folder)


def test_output_folder_is_atomic(tmp_path):
    out = tmp_path / "r"

    def failing(folder):
        (folder / "report.json").write_text("{}")
        raise KeyboardInterrupt  # an interrupted run

    with pytest.raises(KeyboardInterrupt):
        write(out, failing, overwrite=False)
    assert list(tmp_path.iterdir()) == []  # no half report, no temp folder


def test_existing_folder_refused_then_replaced(tmp_path):
    out = tmp_path / "r"
    write(out, fill_with("a.txt", "1"), overwrite=False)
    with pytest.raises(ValueError, match="exists"):
        write(out, fill_with("a.txt", "2"), overwrite=False)
    assert (out / "a.txt").read_text() == "1"
    # a failing overwrite keeps the old folder
    with pytest.raises(RuntimeError):
        write(out, lambda f: (_ for _ in ()).throw(RuntimeError("x")), overwrite=True)
    assert (out / "a.txt").read_text() == "1"
    write(out, fill_with("b.txt", "2"), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        outputs.check_output_folder(tmp_path / "file", overwrite=True)


@pytest.mark.parametrize("where", ["same", "inside", "contains", "around"])
def test_output_that_overlaps_an_input_is_refused(tmp_path, where):
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt.pt").write_text("weights")
    out, source = {
        "same": (run, run),
        "inside": (run / "report", run),
        "contains": (run, run / "ckpt.pt"),
        "around": (tmp_path, run / "ckpt.pt"),
    }[where]
    with pytest.raises(ValueError, match="own input"):
        write(out, fill_with("a.txt", "x"), overwrite=True, inputs=[source])
    assert (run / "ckpt.pt").read_text() == "weights"


def test_modes_are_the_usual_ones(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = outputs.write_json(tmp_path / "x.json", {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    write(tmp_path / "r", fill_with("a.txt", "1"), overwrite=False)
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o777 & ~umask


def test_json_has_no_nan(tmp_path):
    outputs.write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.0, None]}


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), outputs.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    with outputs.atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_unwritable_parent_is_refused_before_work(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        outputs.check_output_folder(tmp_path / "a_file" / "report", overwrite=False)
