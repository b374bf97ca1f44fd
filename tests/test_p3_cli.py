"""The P3 command line: invfast train --mode da|ir|wt, invfast metrics / drift / saliency."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from invfast import cli
from invfast.core import checkpoint, data
from invfast.learning import metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def _write_npz(path: Path, seed: int, count: int, structured: bool) -> Path:
    """28×28 uint8 images of 10 classes: a bright block whose position is the class
    (learnable in one epoch), or pure noise (a drift target)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
    if structured:
        for i, c in enumerate(labels):
            row, col = 3 + 3 * (c % 5), 3 + 12 * (c // 5)
            images[i, row : row + 6, col : col + 9] = 220
    else:
        images = rng.integers(0, 256, (count, 28, 28)).astype(np.uint8)
    np.savez(path, x=images, y=labels)
    return path


def _train(tmp: Path, spec: str, name: str, *extra: str) -> Path:
    out = tmp / name
    argv = ["train", "--data", spec, "--p3-protocol", "--group", "R4", "--epochs", "1",
            "--batch-size", "32", "--eval-batch-size", "64", "--device", "cpu",
            "--no-progress", "--out", str(out), *extra]  # fmt: skip
    assert cli.main(argv) == 0
    return out / "ckpt.pt"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("p3cli")
    first = _write_npz(tmp / "d1.npz", 0, 160, structured=True)
    second = _write_npz(tmp / "d2.npz", 1, 120, structured=False)
    spec = f"npz:{first}"
    return {
        "tmp": tmp,
        "spec": spec,
        "second": f"npz:{second}",
        "da": _train(tmp, spec, "da", "--arch", "mlp5", "--mode", "da"),
        "da_seed1": _train(tmp, spec, "da1", "--arch", "mlp5", "--mode", "da", "--seed", "1"),
        "ir": _train(
            tmp, spec, "ir", "--arch", "mlp5", "--mode", "ir", "--nu", "2.5", "--regularizer", "kl"
        ),
        "wt": _train(tmp, spec, "wt", "--arch", "mlp5-wt", "--mode", "wt"),
    }


def test_modes_save_loadable_checkpoints(runs):
    for mode in ("da", "ir", "wt"):
        ckpt = checkpoint.load(runs[mode])
        model = checkpoint.build_model(ckpt)
        p3 = ckpt["extra"]["p3"]
        assert (p3["mode"], p3["group"], p3["protocol"], p3["left_out"]) == (mode, "R4", True, [9])
        assert ckpt["arch"]["image_size"] == 36 and ckpt["arch"]["num_classes"] == 9
        assert len(ckpt["input"]["standardize"]["mean"]) == 1
        assert model(torch.zeros(2, 1, 36, 36)).shape == (2, 9)
        metrics_json = json.loads((runs[mode].parent / "metrics.json").read_text())
        assert metrics_json["complete"] and len(metrics_json["history"]) == 1
    wt = checkpoint.load(runs["wt"])
    assert wt["arch"]["name"] == "mlp5-wt"
    assert wt["arch"]["kwargs"] == {"group": "R4", "hidden": 128, "pool": "mean"}
    ir = checkpoint.load(runs["ir"])["extra"]["p3"]
    assert (ir["nu"], ir["regularizer"]) == (2.5, "kl")
    history = json.loads((runs["ir"].parent / "metrics.json").read_text())["history"]
    assert history[0]["invariance"] > 0  # the regularizer was on


def test_metrics_table_json_and_exact_invariance(runs, capsys):
    out = runs["tmp"] / "table1.json"
    argv = [
        "metrics",
        str(runs["da"]),
        str(runs["ir"]),
        str(runs["wt"]),
        "--si-images",
        "4",
        "--sigma-images",
        "4",
        "--steps",
        "8",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    for text in ("DA [R4]", "IR (kl, ν=2.5) [R4]", "WT [R4]", "accuracy %", "LI", "DI", "SI",
                 "σ_max", "runs (seeds)"):  # fmt: skip
        assert text in table
    payload = json.loads(out.read_text())
    by_label = {c["label"]: c for c in payload["configurations"]}
    assert set(by_label) == {"DA", "IR (kl, ν=2.5)", "WT"}
    wt = next(r for r in payload["checkpoints"] if r["configuration"] == "WT")["metrics"]
    assert abs(wt["LI"]["value"]) < 1e-9 and abs(wt["DI"]["value"]) < 1e-9
    assert wt["SI"]["value"] == pytest.approx(1.0, abs=1e-6)
    da = next(r for r in payload["checkpoints"] if r["configuration"] == "DA")["metrics"]
    assert da["LI"]["value"] > 1e-7  # an unconstrained MLP is not invariant
    assert da["SI"]["n_images"] == 4 and da["sigma_max"]["n_images"] == 4
    # The command reports what the library computes on the checkpoint's own test data.
    ckpt = checkpoint.load(runs["da"])
    _, images = checkpoint.evaluation_data(ckpt)
    direct = metrics.orbit_metrics(
        checkpoint.build_model(ckpt), data.loader(images, 50), "R4",
        preprocess=checkpoint.preprocess(ckpt),
    )  # fmt: skip
    assert da["accuracy"]["value"] == pytest.approx(direct["accuracy"].value, abs=1e-12)
    assert da["LI"]["value"] == pytest.approx(direct["LI"].value, rel=1e-6)
    assert da["accuracy"]["n_images"] == len(images)


def test_metrics_mean_and_std_over_seeds(runs, capsys):
    out = runs["tmp"] / "seeds.json"
    argv = [
        "metrics",
        str(runs["da"]),
        str(runs["da_seed1"]),
        "--si-images",
        "2",
        "--sigma-images",
        "2",
        "--steps",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    assert "±" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    (config,) = payload["configurations"]
    assert config["n"] == 2 and sorted(config["seeds"]) == [0, 1]
    values = [r["metrics"]["LI"]["value"] for r in payload["checkpoints"]]
    assert config["mean"]["LI"] == pytest.approx(sum(values) / 2)
    assert config["std"]["LI"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))


def test_drift_writes_json_and_png(runs, capsys):
    out = runs["tmp"] / "drift"
    argv = [
        "drift",
        str(runs["da"]),
        str(runs["wt"]),
        "--to",
        runs["second"],
        "--betas",
        "0:1:0.5",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    payload = json.loads((out / "drift.json").read_text())
    assert [c["label"] for c in payload["curves"]] == ["DA", "WT"]
    for curve in payload["curves"]:
        assert curve["betas"] == [0.0, 0.5, 1.0]
        assert curve["accuracy_ratio"][0] == pytest.approx(1.0)
        assert curve["n_images"] > 0
    assert max(abs(v) for v in payload["curves"][1]["di"]) < 1e-9  # WT: invariant at every β
    assert (out / "drift.png").read_bytes()[:8] == PNG_MAGIC
    assert "wrote" in capsys.readouterr().out


def test_saliency_writes_grid(runs):
    out = runs["tmp"] / "saliency"
    argv = ["saliency", str(runs["wt"]), "--n", "3", "--steps", "8", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert (out / "saliency.png").read_bytes()[:8] == PNG_MAGIC
    payload = json.loads((out / "saliency.json").read_text())
    assert payload["indices"] == [0, 1, 2] and payload["group"] == "R4"
    cosines = np.array(payload["cosine_to_identity"])
    assert cosines.shape == (3, 4)
    assert np.allclose(cosines, 1.0, atol=1e-5)  # the weight-tied model's maps are equivariant


def test_nu_auto_keeps_the_first_passing_nu(runs):
    out = runs["tmp"] / "auto"
    _train(runs["tmp"], runs["spec"], "auto", "--arch", "mlp5", "--mode", "ir", "--nu", "auto",
           "--nu-grid", "1,0.1", "--target-si", "0", "--si-images", "2")  # fmt: skip
    search = json.loads((out / "nu_search.json").read_text())
    assert search["nu"] == 0.1 and search["met_target"] and len(search["trials"]) == 1
    assert (out / "ckpt.pt").read_bytes() == (out / "nu-0.1" / "ckpt.pt").read_bytes()
    assert not (out / "nu-1").exists()


def _fails(argv: list[str], capsys, expected: str) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_bad_input_exits_2(runs, capsys, tmp_path):
    da = str(runs["da"])
    _fails(["metrics", str(tmp_path / "missing.pt"), "--group", "R4"], capsys, "no such")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(runs["da"].read_bytes()[:500])
    _fails(["metrics", str(corrupt)], capsys, "corrupt")
    _fails(["metrics", da, "--group", "Z9"], capsys, "group must be one of")
    _fails(["saliency", da, "--group", "Z9", "--out", str(tmp_path / "s")], capsys, "group")
    from invfast.core import models

    odd = tmp_path / "odd.pt"  # a 28-px model: T3 needs a width divisible by 3
    checkpoint.save(odd, arch="mlp5", state_dict=models.build("mlp5", 3, 1, 28).state_dict(),
                    num_classes=3, in_channels=1, image_size=28)  # fmt: skip
    _fails(["metrics", str(odd), "--group", "T3"], capsys, "divisible by 3")
    _fails(["metrics", str(odd)], capsys, "pass --group")
    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    _fails(["metrics", da, "--out", str(existing)], capsys, "--overwrite")
    assert existing.read_text() == "{}"
    _fails(["drift", da, "--to", runs["second"], "--out", str(tmp_path)], capsys, "--overwrite")
    _fails(["drift", da, "--to", runs["second"], "--betas", "0:2:1",
            "--out", str(tmp_path / "d")], capsys, "betas")  # fmt: skip
    _fails(["saliency", da, "--n", "0", "--out", str(tmp_path / "s")], capsys, "--n")
    base = ["train", "--data", runs["spec"], "--epochs", "1", "--device", "cpu"]
    # 28 px without the protocol: T3 needs a width divisible by 3
    _fails([*base, "--arch", "mlp5", "--group", "T3", "--mode", "da",
            "--out", str(tmp_path / "t3")], capsys, "divisible by 3")  # fmt: skip
    assert not (tmp_path / "t3").exists()
    _fails([*base, "--arch", "mlp5", "--group", "R4", "--mode", "wt",
            "--out", str(tmp_path / "w")], capsys, "mlp5-wt")  # fmt: skip
    _fails([*base, "--arch", "mlp5", "--mode", "da", "--out", str(tmp_path / "g")], capsys,
           "--group")  # fmt: skip
    _fails([*base, "--arch", "mlp5", "--group", "R4", "--out", str(tmp_path / "p1")], capsys,
           "--mode")  # fmt: skip
    _fails([*base, "--arch", "mlp5", "--group", "R4", "--mode", "da", "--nu", "auto",
            "--out", str(tmp_path / "n")], capsys, "--mode ir")  # fmt: skip
    _fails([*base, "--arch", "mlp5", "--group", "R4", "--mode", "ir", "--nu", "-1",
            "--out", str(tmp_path / "n")], capsys, "--nu")  # fmt: skip
    _fails([*base, "--arch", "mlp5", "--group", "R4", "--mode", "da",
            "--out", str(runs["da"].parent)], capsys, "--overwrite")  # fmt: skip


def test_metrics_group_from_checkpoint_and_overwrite(runs, capsys, tmp_path):
    out = tmp_path / "m.json"
    out.write_text("old")
    argv = [
        "metrics",
        str(runs["wt"]),
        "--si-images",
        "1",
        "--sigma-images",
        "1",
        "--steps",
        "2",
        "--max-images",
        "5",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--overwrite",
    ]
    assert cli.main(argv) == 0
    payload = json.loads(out.read_text())
    assert payload["checkpoints"][0]["group"] == "R4"
    assert payload["checkpoints"][0]["metrics"]["LI"]["n_images"] == 5
    capsys.readouterr()
