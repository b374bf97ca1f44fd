"""invfast.neurons.training and the train / calibrate commands: P1's paradigm end to end."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import invfast
from invfast import cli
from invfast.core import checkpoint, data, models, transforms
from invfast.neurons import calibration, paradigm, training

TINY_DATA = [
    "--synthetic-classes", "6", "--synthetic-per-class", "20", "--image-size", "16",
]  # fmt: skip
TINY_MODEL = ["--arch", "convnet-small", "--arch-arg", "width=4", "--arch-arg", "hidden=16"]
TINY = [*TINY_MODEL, *TINY_DATA, "--epochs", "1", "--batch-size", "16", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the paradigm ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("all", 20), ("0", 0), ("5", 5), (7, 7), ("0.25", 5), ("1.0", 20), ("0.5", 10), (0.0, 0)],
)
def test_parse_seen_transformed(value, expected):
    assert paradigm.parse_seen_transformed(value, 20) == expected


@pytest.mark.parametrize("value", ["21", "-1", "1.5", "some", "-0.1"])
def test_parse_seen_transformed_rejects(value):
    with pytest.raises(ValueError, match="seen_transformed"):
        paradigm.parse_seen_transformed(value, 20)


def test_seen_categories_are_nested_and_seeded():
    sets = [set(paradigm.seen_transformed_classes(16, n, seed=3)) for n in range(17)]
    assert all(len(s) == n for n, s in enumerate(sets))
    assert all(a < b for a, b in itertools.pairwise(sets))  # nested as N grows
    assert sets[16] == set(range(16))
    assert paradigm.seen_transformed_classes(16, 5, 3) == paradigm.seen_transformed_classes(
        16, 5, 3
    )
    others = {tuple(paradigm.seen_transformed_classes(16, 5, s)) for s in range(6)}
    assert len(others) > 1


def test_paradigm_mask_transforms_exactly_seen_categories_at_half_rate():
    num_classes, per_class = 10, 4000
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    ids = torch.arange(len(labels)) * 7 + 3
    seen = torch.zeros(num_classes, dtype=torch.bool)
    seen[[1, 4, 5]] = True
    mask = paradigm.paradigm_mask(labels, ids, seen, seed=0, epoch=0)
    assert not mask[~seen[labels]].any()
    n_seen = int(seen[labels].sum())
    rate = mask.sum().item() / n_seen
    assert abs(rate - 0.5) < 4 * math.sqrt(0.25 / n_seen)  # 4 σ of the binomial
    for c in (1, 4, 5):  # each seen category on its own too
        per = mask[labels == c].float().mean().item()
        assert abs(per - 0.5) < 4 * math.sqrt(0.25 / per_class)
    # a pure function of (seed, epoch, id): batch order does not matter
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    shuffled = paradigm.paradigm_mask(labels[order], ids[order], seen, seed=0, epoch=0)
    assert torch.equal(shuffled, mask[order])
    # new draws each epoch and each seed, independent of the previous ones
    other_epoch = paradigm.paradigm_mask(labels, ids, seen, seed=0, epoch=1)
    other_seed = paradigm.paradigm_mask(labels, ids, seen, seed=1, epoch=0)
    for other in (other_epoch, other_seed):
        both = (other & mask).sum().item() / n_seen
        assert abs(both - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n_seen)
    quarter = paradigm.paradigm_mask(labels, ids, seen, seed=0, epoch=0, probability=0.25)
    assert abs(quarter.sum().item() / n_seen - 0.25) < 0.02
    assert not (quarter & ~mask).any()  # p = 0.25 draws are a subset of p = 0.5 draws


# ---- metrics on a hand-built confusion -------------------------------------------------


def test_within_across_and_seen_unseen_confusion():
    # 4 classes, seen-transformed = {0, 1}; rows = true, columns = predicted
    transformed = torch.tensor(
        [
            [8, 1, 1, 0],  # seen: 8 right, 1 to seen, 1 to unseen
            [2, 6, 0, 2],  # seen: 6 right, 2 to seen, 2 to unseen
            [3, 3, 4, 0],  # unseen: 4 right, 6 to seen
            [0, 5, 0, 5],  # unseen: 5 right, 5 to seen
        ]
    )
    clean = torch.diag(torch.tensor([10, 9, 10, 7])) + torch.tensor(
        [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [3, 0, 0, 0]]
    )
    m = paradigm.paradigm_metrics(clean, transformed, seen=[0, 1])
    assert m["within_accuracy"] == pytest.approx(14 / 20)
    assert m["across_accuracy"] == pytest.approx(9 / 20)
    assert m["transformed_accuracy"] == pytest.approx(23 / 40)
    assert m["clean_accuracy"] == pytest.approx(36 / 40)
    assert m["clean_seen_accuracy"] == pytest.approx(19 / 20)
    assert m["clean_unseen_accuracy"] == pytest.approx(17 / 20)
    fig6 = m["seen_unseen"]
    assert fig6["counts"] == [[17, 3], [11, 9]]
    assert fig6["percent"] == [[85.0, 15.0], [55.0, 45.0]]
    q = fig6["quadrants"]
    assert (q["I_unseen_as_seen"], q["II_seen_as_seen"]) == (55.0, 85.0)
    assert (q["III_seen_as_unseen"], q["IV_unseen_as_unseen"]) == (15.0, 45.0)
    none_seen = paradigm.paradigm_metrics(clean, transformed, seen=[])
    assert none_seen["within_accuracy"] is None
    assert none_seen["across_accuracy"] == pytest.approx(23 / 40)
    assert none_seen["seen_unseen"]["percent"][0] == [None, None]
    assert (
        paradigm.paradigm_metrics(clean, transformed, seen=[0, 1, 2, 3])["across_accuracy"] is None
    )


def test_confusion_matrix_counts():
    predictions = torch.tensor([0, 2, 2, 1, 0])
    labels = torch.tensor([0, 2, 1, 1, 2])
    expected = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    assert torch.equal(paradigm.confusion_matrix(predictions, labels, 3), expected)


def test_sharded_evaluation_sums_to_the_whole():
    ds = data.load("synthetic", synthetic_classes=5, synthetic_per_class=9, image_size=16)
    torch.manual_seed(0)
    model = models.build("convnet-small", 5, 3, 16, width=4)
    blur = transforms.get("blur", sigma=1.0)
    dev = torch.device("cpu")
    whole = training.evaluate(model, data.loader(ds.test, 4), blur, 5, dev, seed=0)
    parts = [
        training.evaluate(
            model, data.loader(ds.test, 4, rank=r, world_size=3), blur, 5, dev, seed=0
        )
        for r in range(3)
    ]
    assert torch.equal(sum(p[0] for p in parts), whole[0])
    assert torch.equal(sum(p[1] for p in parts), whole[1])
    assert int(whole[0].sum()) == len(ds.test)


def test_learning_rate_schedules():
    config = training.TrainConfig(arch="mlp5", data="synthetic", out="x", epochs=10, lr=0.1,
                                  schedule="step", lr_step=3, lr_gamma=0.5).resolved()  # fmt: skip
    assert [training.learning_rate(config, e) for e in (0, 2, 3, 6, 9)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.025, 0.0125]
    )
    config.schedule = "cosine"
    assert training.learning_rate(config, 0) == pytest.approx(0.1)
    assert training.learning_rate(config, 5) == pytest.approx(0.05)


def test_recipes_are_the_documented_defaults():
    alexnet = training.TrainConfig(arch="alexnet-p1", data="synthetic", out="x").resolved()
    assert (alexnet.optimizer, alexnet.lr, alexnet.momentum, alexnet.weight_decay) == (
        "sgd", 1e-4, 0.9, 5e-4,
    )  # fmt: skip
    assert (alexnet.batch_size, alexnet.epochs) == (32, 45)  # P1 Appendix B
    from invfast.cli import train as train_command

    lines = {
        line.split()[0]: line for line in train_command.RECIPES.splitlines() if line[:2] == "  "
    }
    for entry in models.describe():
        recipe = {**training.GENERIC_RECIPE, **entry.recipe}
        line = lines[entry.name] if entry.name in lines else lines["other"]
        fields = re.match(
            r"\s+\S+\s+(\w+)\s+lr (\S+).*weight decay (\S+)\s+batch (\d+)\s+(\d+) epochs", line
        )
        assert fields, line
        assert fields.group(1) == recipe["optimizer"]
        assert float(fields.group(2)) == pytest.approx(recipe["lr"])
        assert float(fields.group(3)) == pytest.approx(recipe["weight_decay"])
        assert int(fields.group(4)) == recipe["batch_size"]
        assert int(fields.group(5)) == recipe["epochs"]
        if "momentum" in line:
            assert f"momentum {recipe['momentum']:g}" in line
        assert recipe["schedule"] in line


# ---- the command -----------------------------------------------------------------------


def test_train_help_documents_every_flag(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("train", "calibrate"):
        command = sub.choices[name]
        undocumented = [
            a.option_strings for a in command._actions
            if a.option_strings and a.dest != "help" and not a.help
        ]  # fmt: skip
        assert undocumented == [], name
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--seen-transformed", "--p-transform", "--lr", "--device", "--out", "alexnet-p1"):
        assert flag in text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny 1-epoch run through the command line, with the transform calls recorded."""
    out = tmp_path_factory.mktemp("run") / "blur-3"
    calls = []
    real_get = transforms.get

    def spy_get(name, **params):
        real = real_get(name, **params)

        def call(x, **kw):
            calls.append({k: v for k, v in kw.items() if k in ("seed", "index", "apply")})
            return real(x, **kw)

        spy = type("Spy", (), {"__call__": staticmethod(call), "name": real.name,
                               "params": real.params, "family": real.family})  # fmt: skip
        return spy()

    transforms.get = spy_get
    try:
        args = ["train", *TINY, "--transform", "blur", "--sigma", "1.5",
                "--seen-transformed", "3", "--seed", "2", "--out", str(out)]  # fmt: skip
        code = cli.main(args)
    finally:
        transforms.get = real_get
    return out, code, calls


def test_one_epoch_train_writes_loadable_checkpoint(trained):
    out, code, _ = trained
    assert code == 0
    ckpt = checkpoint.load(out / "ckpt.pt")
    assert torch.load(out / "ckpt.pt", weights_only=True)["arch"]["name"] == "convnet-small"
    assert ckpt["seen_transformed"] == paradigm.seen_transformed_classes(6, 3, seed=2)
    assert ckpt["transform"] == {"name": "blur", "params": {"sigma": 1.5}}
    assert ckpt["data"]["spec"] == "synthetic" and ckpt["seed"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["best_epoch"] == 1 and len(metrics["history"]) == 1
    final = metrics["final"]["test"]
    for key in ("clean_accuracy", "within_accuracy", "across_accuracy"):
        assert 0.0 <= final[key] <= 1.0
    assert ckpt["metrics"]["test"] == final
    # the checkpoint reproduces the final numbers
    ds = data.load(ckpt["data"]["spec"], **ckpt["data"]["options"])
    model = checkpoint.build_model(ckpt)
    blur = transforms.get("blur", **ckpt["transform"]["params"])
    clean, tr = training.evaluate(model, data.loader(ds.test, 7), blur, 6, torch.device("cpu"),
                                  seed=ckpt["seed"])  # fmt: skip
    assert clean.tolist() == metrics["final"]["confusion_clean"]
    assert tr.tolist() == metrics["final"]["confusion_transformed"]


def test_training_transforms_only_seen_categories_at_half_rate(trained):
    out, _, calls = trained
    ckpt = checkpoint.load(out / "ckpt.pt")
    ds = data.load(ckpt["data"]["spec"], **ckpt["data"]["options"])
    label_of = dict(zip(ds.train.ids.tolist(), ds.train.labels.tolist(), strict=True))
    train_seed = paradigm.transform_seed(2, 0)
    train_calls = [c for c in calls if c.get("seed") == train_seed]
    assert train_calls
    applied, total = 0, 0
    seen = set(ckpt["seen_transformed"])
    for call in train_calls:
        for image_id, apply in zip(call["index"].tolist(), call["apply"].tolist(), strict=True):
            if label_of[image_id] in seen:
                applied, total = applied + apply, total + 1
            else:
                assert not apply
    assert total > 0 and abs(applied / total - 0.5) < 4 * math.sqrt(0.25 / total)


def test_existing_out_is_refused_unless_overwrite(trained, capsys):
    out, _, _ = trained
    before = (out / "ckpt.pt").read_bytes()
    assert cli.main(["train", *TINY, "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "ckpt.pt").read_bytes() == before


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    cases = [
        (["--device", "cuda"], "no CUDA GPU"),
        (["--seen-transformed", "99"], "seen_transformed"),
        (["--transform", "warp"], "unknown transform"),
        (["--arch-arg", "depth=3"], "unknown argument"),
        (["--lr", "-1"], "lr must be a positive"),
    ]
    for extra, message in cases:
        if extra[:2] == ["--device", "cuda"] and torch.cuda.is_available():
            continue
        code = cli.main(["train", *TINY, *extra, "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (extra, err)
        assert not (tmp_path / "r" / "ckpt.pt").exists()


def test_calibrate_stops_at_the_first_strength_below_target(trained, tmp_path, capsys):
    out, _, _ = trained
    ckpt = checkpoint.load(out / "ckpt.pt")
    report = calibration.calibrate(ckpt, "blur", target=0.99, step=0.5, log=lambda _m: None)
    assert report["chosen"] == 0.5 and len(report["sweep"]) == 1
    report = calibration.calibrate(
        ckpt, "blur", target=0.2, step=2.0, max_steps=3, log=lambda _m: None
    )
    accuracies = [row["accuracy"] for row in report["sweep"]]
    assert all(a >= 0.2 for a in accuracies[:-1])
    assert report["chosen"] is None or accuracies[-1] < 0.2
    with pytest.raises(ValueError, match="at or below chance"):
        calibration.calibrate(ckpt, "blur", target=0.1)
    with pytest.raises(ValueError, match="no default strength"):
        calibration.calibrate(ckpt, "identity")
    code = cli.main(["calibrate", "--checkpoint", str(out / "ckpt.pt"), "--transform", "blur",
                     "--target", "0.99", "--json", str(tmp_path / "c.json")])  # fmt: skip
    assert code == 0
    assert "chosen: --transform blur --param sigma=0.5" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["chosen"] == 0.5


# ---- DistributedDataParallel -----------------------------------------------------------


def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ)
    package_root = str(Path(invfast.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "invfast", "train", *TINY, "--seen-transformed", "2", "--device", "cpu",
        "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["complete"]
    assert len(re.findall(r"wrote .*ckpt\.pt", result.stdout)) == 1  # only rank 0 prints
    # the all-reduced confusion equals a single-process evaluation of the saved model
    ckpt = checkpoint.load(out / "ckpt.pt")
    ds = data.load(ckpt["data"]["spec"], **ckpt["data"]["options"])
    blur = transforms.get(ckpt["transform"]["name"], **ckpt["transform"]["params"])
    clean, tr = training.evaluate(checkpoint.build_model(ckpt), data.loader(ds.test, 5), blur,
                                  6, torch.device("cpu"), seed=ckpt["seed"])  # fmt: skip
    assert clean.tolist() == metrics["final"]["confusion_clean"]
    assert tr.tolist() == metrics["final"]["confusion_transformed"]
    history = metrics["history"][0]
    train_images = metrics["dataset"]["train_images"]
    assert history["train_loss"] > 0 and train_images > 0
