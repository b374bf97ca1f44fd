"""invfast.neurons.report: report files, tables, comparisons."""

from __future__ import annotations

import pytest

from invfast.neurons import report


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
