"""``invfast analyze`` / ``compare`` / ``demo`` on the command line: outputs and bad input
(one-line error, exit code 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analysis_helpers import tiny_checkpoint
from invfast import cli
from invfast.core import checkpoint


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt.pt")


def analyze(*args):
    return cli.main(["analyze", *map(str, args), "--no-progress"])


def test_analyze_writes_report(ckpt_path, tmp_path, capsys):
    out = tmp_path / "report"
    assert analyze(ckpt_path, "--out", out, "--tau", "auto", "--ablation", "--goodfellow",
                   "--batch-size", 9) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "classifier.relu4" in printed and f"report written to {out}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"]["sha256"] and report["backend"] == "cpu"
    assert report["command"].startswith("invfast analyze")
    assert report["transform"] == {"name": "blur", "params": {"sigma": 1.5}}
    assert report["layers"][0]["name"] == "classifier.relu4"  # penultimate first
    assert len(report["ablation"]["active"]["transformed_accuracy"]) == 21
    for name in ("invariance_violins.png", "invariance_vs_tau.png", "ablation.png",
                 "layer_mean_invariance.png", "arrays.npz"):  # fmt: skip
        assert (out / name).stat().st_size > 0
    arrays = np.load(out / "arrays.npz")
    assert arrays["features.relu1/I"].shape == (2, 21, 2 * 16 * 16)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_transform_override_and_existing_out(ckpt_path, tmp_path):
    out = tmp_path / "r"
    assert analyze(ckpt_path, "--transform", "noise", "--sigma", "20", "--layers",
                   "penultimate", "--tau", "0.2", "--out", out) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["transform"]["name"] == "noise" and report["tau"]["mode"] == "fixed"
    before = (out / "report.json").read_bytes()
    assert analyze(ckpt_path, "--out", out) == 2  # refused, untouched
    assert (out / "report.json").read_bytes() == before
    assert analyze(ckpt_path, "--out", out, "--overwrite", "--layers", "penultimate") == 0
    assert json.loads((out / "report.json").read_text())["transform"]["name"] == "blur"


def _bad_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    return garbage, foreign


BAD = {
    "missing checkpoint": (lambda c, t: [t / "nope.pt"], "no such checkpoint"),
    "corrupt checkpoint": (lambda c, t: [_bad_files(t)[0]], "corrupt"),
    "not invfast": (lambda c, t: [_bad_files(t)[1]], "not an invfast checkpoint"),
    "unknown transform": (lambda c, t: [c, "--transform", "swirl"], "valid: "),
    "unknown layer": (lambda c, t: [c, "--layers", "features.nope"], "features.relu1"),
    "negative layer": (lambda c, t: [c, "--layers", "features.conv1"], "features.conv1"),
    "class count": (lambda c, t: [c, "--synthetic-classes", "3"], "3 classes"),
    "image shape": (lambda c, t: [c, "--image-size", "20"], "classifier takes 3×16×16"),
    "cuda": (lambda c, t: [c, "--device", "cuda"], "cuda"),
    "tau not in grid": (lambda c, t: [c, "--tau", "0.33"], "grid"),
    "bad taus": (lambda c, t: [c, "--taus", "1:0:0.1"], "--taus"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case, ckpt_path, tmp_path, capsys):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    make_args, expected = BAD[case]
    work = tmp_path / "work"
    work.mkdir()
    out = work / "report"
    assert analyze(*make_args(ckpt_path, tmp_path), "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("invfast analyze: error:") and "\n" not in err
    assert expected in err
    assert list(work.iterdir()) == []


def test_empty_dataset(ckpt_path, tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "empty.npz"
    np.savez(path, x=rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8), y=np.arange(8) % 4,
             x_test=np.zeros((0, 16, 16, 3), np.uint8), y_test=np.zeros(0, np.int64))  # fmt: skip
    out = tmp_path / "report"
    assert analyze(ckpt_path, "--data", f"npz:{path}", "--out", out) == 2
    err = capsys.readouterr().err
    assert "error" in err and not out.exists()


def test_negative_layer_accepted_with_activation(ckpt_path, tmp_path):
    out = tmp_path / "r"
    assert analyze(ckpt_path, "--layers", "features.conv1", "--activation", "relu", "--tau",
                   "auto", "--ablate-layer", "features.conv1", "--out", out) == 0  # fmt: skip
    assert json.loads((out / "report.json").read_text())["activation"] == "relu"


def test_compare(ckpt_path, tmp_path, capsys):
    few, many = tmp_path / "few", tmp_path / "many"
    assert analyze(ckpt_path, "--layers", "penultimate", "--tau", "0.1", "--out", few) == 0
    # a second checkpoint with more seen-transformed categories
    other = tiny_checkpoint(tmp_path / "c2.pt", seed=1)
    ckpt = torch.load(other, weights_only=True)
    from invfast.core import checkpoint

    checkpoint.save(tmp_path / "c3.pt", arch="convnet-small", state_dict=ckpt["state_dict"],
                    num_classes=4, in_channels=3, image_size=16,
                    arch_kwargs=ckpt["arch"]["kwargs"], data=ckpt["data"],
                    transform=ckpt["transform"], seen_transformed=[0, 1, 2], seed=3)  # fmt: skip
    assert analyze(tmp_path / "c3.pt", "--layers", "penultimate", "--tau", "0.1", "--out",
                   many) == 0  # fmt: skip
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(many), str(few), "--out", str(out)]) == 0
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["seen_transformed"] for r in rows] == [2, 3]
    assert (out / "compare.png").stat().st_size > 0
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no report.json" in capsys.readouterr().err


@pytest.mark.parametrize("transform", ["noise", "blur"])
def test_demo_with_tiny_settings(tmp_path, capsys, transform):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--transform",
        transform,
        "--out",
        str(out),
        "--epochs",
        "1",
        "--classes",
        "3",
        "--per-class",
        "6",
        "--image-size",
        "16",
        "--width",
        "2",
        "--seen",
        "1,2",
        "--seeds",
        "2",
        "--seed",
        "5",
        "--no-progress",
    ]
    assert cli.main(args) == 0
    compared = json.loads((out / "compare.json").read_text())
    rows, means = compared["rows"], compared["means"]
    assert [(r["seen_transformed"], r["seed"]) for r in rows] == [(1, 5), (1, 6), (2, 5), (2, 6)]
    assert [(m["seen_transformed"], m["runs"]) for m in means] == [(1, 2), (2, 2)]
    for m in means:
        count = m["seen_transformed"]
        runs = [r["across_accuracy"] for r in rows if r["seen_transformed"] == count]
        assert m["across_accuracy"] == pytest.approx(sum(runs) / 2)
        assert (m["across_accuracy_min"], m["across_accuracy_max"]) == (min(runs), max(runs))
    for name in ("seen-1/seed-5/report/report.json", "seen-2/seed-6/run/ckpt.pt", "compare.png"):
        assert (out / name).is_file()
    assert checkpoint.load(out / "seen-2/seed-6/run/ckpt.pt")["seed"] == 6
    assert checkpoint.load(out / "seen-2/seed-5/run/ckpt.pt")["transform"]["name"] == transform
    printed = capsys.readouterr().out
    assert "(2 runs)" in printed
    assert str(out) in printed
    assert cli.main(args) == 2  # exists


@pytest.mark.parametrize(
    "flags, message",
    [(["--seeds", "0"], "--seeds expects a count >= 1"), (["--seen", "2"], "--seen needs")],
)
def test_demo_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()
