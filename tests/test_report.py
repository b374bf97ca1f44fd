"""invfast.report: atomic report folders, JSON strictness, tables."""

from __future__ import annotations

import json

import pytest

from invfast.neurons import report


def test_write_folder_is_atomic(tmp_path):
    out = tmp_path / "r"

    def failing(folder):
        (folder / "report.json").write_text("{}")
        raise KeyboardInterrupt  # an interrupted run

    with pytest.raises(KeyboardInterrupt):
        report.write_folder(out, failing)
    assert list(tmp_path.iterdir()) == []  # no half report, no temp folder


def test_existing_folder_refused_then_replaced(tmp_path):
    out = tmp_path / "r"
    report.write_folder(out, lambda f: (f / "a.txt").write_text("1"))
    with pytest.raises(ValueError, match="exists"):
        report.write_folder(out, lambda f: (f / "a.txt").write_text("2"))
    assert (out / "a.txt").read_text() == "1"
    # a failing overwrite keeps the old folder
    with pytest.raises(RuntimeError):
        report.write_folder(out, lambda f: (_ for _ in ()).throw(RuntimeError("x")), overwrite=True)
    assert (out / "a.txt").read_text() == "1"
    report.write_folder(out, lambda f: (f / "b.txt").write_text("2"), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        report.check_destination(tmp_path / "file", overwrite=True)


def test_json_has_no_nan(tmp_path):
    report.dump_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.0, None]}


def test_load_report_refuses_other_json(tmp_path):
    (tmp_path / "report.json").write_text('{"tool": "other"}')
    with pytest.raises(ValueError, match="not an invfast analyze report"):
        report.load_report(tmp_path)
    (tmp_path / "report.json").write_text("{")
    with pytest.raises(ValueError, match="corrupt"):
        report.load_report(tmp_path)


def test_compare_rows_sorted_and_layer_checked():
    def fake(n, mean):
        group = {"at_tau": {"mean_I": mean}}
        return {"num_seen_transformed": n, "tau": {"value": 0.1},
                "layers": [{"name": "fc", "groups": {"seen": group, "unseen": group}}],
                "accuracy": {"within_accuracy": 0.5, "across_accuracy": None,
                             "clean_accuracy": 0.9},
                "checkpoint": {"sha256": "x"}}  # fmt: skip

    rows = report.compare_rows([fake(5, 0.7), fake(1, 0.6)])
    assert [r["seen_transformed"] for r in rows] == [1, 5]
    assert "   -  " in report.format_compare(rows)  # across accuracy undefined
    with pytest.raises(ValueError, match="valid: fc"):
        report.compare_rows([fake(1, 0.5)], layer="conv")
