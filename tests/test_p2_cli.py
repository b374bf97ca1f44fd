"""``invfast screen`` and ``invfast itn`` on a tiny checkpoint trained here."""

from __future__ import annotations

import json

import pytest
import torch

from invfast import cli, screening
from invfast.core import checkpoint, data, transforms
from invfast.neurons import training
from invfast.screening import itn

PNG = b"\x89PNG\r\n\x1a\n"

# (screening name, its identity magnitude, another magnitude)
IDENTITIES = [
    ("translate-x", 0.0, 3.0), ("translate-y", 0.0, -2.0), ("rotate", 0.0, 40.0),
    ("scale-x", 1.0, 0.6), ("scale-y", 1.0, 1.5), ("zoom", 1.0, 0.7),
    ("brightness", 0.0, 60.0), ("contrast", 1.0, 0.4), ("grayscale-blend", 0.0, 1.0),
    ("blur", 0.0, 1.5), ("noise", 0.0, 60.0),
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-class synthetic checkpoint of `invfast train` (12 epochs of 128 16×16 images)."""
    out = tmp_path_factory.mktemp("train") / "run"
    config = training.TrainConfig(
        arch="convnet-small", data="synthetic", out=str(out), transform="blur",
        seen_transformed="0", seed=0, epochs=12, batch_size=16, lr=0.003, val_fraction=0.0,
        arch_kwargs={"width": 8, "hidden": 32}, device="cpu", progress=False,
        data_options={"image_size": 16, "synthetic_classes": 4, "synthetic_per_class": 40},
    )  # fmt: skip
    result = training.train(config, log=lambda _msg: None)
    ckpt = checkpoint.load(result.checkpoint)
    clean = ckpt["metrics"]["test"]["clean_accuracy"]
    assert 0.25 < clean < 1.0  # learned something, not everything: equalities below can fail
    return result.checkpoint, ckpt, clean


def invfast(*argv) -> int:
    return cli.main([str(a) for a in argv])


def read_json(path):
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- the table
def test_every_screened_transform_is_exactly_clean_at_its_identity():
    x = torch.randint(0, 256, (6, 3, 13, 11), dtype=torch.uint8)
    ids = torch.arange(6) + 40
    assert [name for name, _, _ in IDENTITIES] == list(screening.SCREENED_TRANSFORMS)
    for name, spec in screening.SCREENED_TRANSFORMS.items():
        transform_fn, standardize_fn = screening.transform_functions(
            name, [spec.identity], standardize="per-image", seed=3
        )
        assert torch.equal(transform_fn(x, torch.full((6,), spec.identity), ids),
                           standardize_fn(x)), name  # fmt: skip
        assert spec.parameter in transforms.describe()[spec.transform]["params"]
        assert screening.parse_magnitudes(spec.default_values)[0] == spec.identity


def test_screen_help_lists_every_transform_with_its_default_values(capsys):
    with pytest.raises(SystemExit):
        cli.main(["screen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, spec in screening.SCREENED_TRANSFORMS.items():
        assert name in text and spec.default_values in text


# --------------------------------------------------------------------------- screen
@pytest.mark.parametrize(("name", "identity", "other"), IDENTITIES)
def test_screen_identity_magnitude_reproduces_clean_accuracy(
    trained, tmp_path, name, identity, other
):
    path, _ckpt, clean = trained
    out = tmp_path / "screen"
    assert invfast("screen", path, "--transform", name, "--values", f"{identity},{other}",
                   "--out", out) == 0  # fmt: skip
    result = read_json(out / "screening.json")
    assert result["clean_accuracy"] == clean  # the checkpoint's own clean test accuracy
    assert result["accuracy"][0] == clean
    assert result["magnitudes"] == [identity, other]
    assert result["source"]["transform"]["identity"] == identity


@pytest.mark.parametrize(
    ("name", "values", "direct"),
    [("rotate", "0,25,-60", lambda m: transforms.get("rotate", angle=m)),
     ("translate-y", "0,3", lambda m: transforms.get("translate", dx=0.0, dy=m)),
     ("scale-x", "1,0.5", lambda m: transforms.get("scale", sx=m, sy=1.0)),
     ("noise", "0,80", lambda m: transforms.get("noise", sigma=m))],
)  # fmt: skip
def test_screen_accuracy_matches_the_transform_applied_directly(
    trained, tmp_path, name, values, direct
):
    """Each screening name drives the right parameter; per-row magnitudes == scalar ones."""
    path, ckpt, _clean = trained
    out = tmp_path / "screen"
    assert invfast("screen", path, "--transform", name, "--values", values, "--max-batch", 7,
                   "--out", out) == 0  # fmt: skip
    result = read_json(out / "screening.json")
    model = checkpoint.build_model(ckpt)
    test = data.load(ckpt["data"]["spec"], **ckpt["data"]["options"]).test
    batch = test.__getitems__(list(range(len(test))))
    for magnitude, accuracy in zip(result["magnitudes"], result["accuracy"], strict=True):
        x = direct(magnitude)(batch.images, seed=ckpt["seed"], index=batch.ids)
        with torch.no_grad():
            expected = (model(x).argmax(1) == batch.labels).double().mean().item()
        assert accuracy == expected


def test_screen_writes_json_png_and_table(trained, tmp_path, capsys):
    path, ckpt, clean = trained
    out = tmp_path / "screen"
    assert invfast("screen", path, "--transform", "rotate", "--values", "0:180:30",
                   "--per-class", "--out", out) == 0  # fmt: skip
    assert {p.name for p in out.iterdir()} == {"screening.json", "accuracy.png", "softmax_000.png"}
    for png in ("accuracy.png", "softmax_000.png"):
        assert (out / png).read_bytes().startswith(PNG)
    result = screening.ScreeningResult.from_dict(read_json(out / "screening.json"))
    assert result.transform == "rotate" and result.parameter == "angle"
    assert result.magnitudes == [0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0]
    assert [c.label for c in result.classes] == [0, 1, 2, 3]
    assert [c.name for c in result.classes] == ckpt["classes"]
    assert result.count == sum(c.count for c in result.classes)
    assert result.source["checkpoint"] == str(path) and result.source["split"] == "test"
    expected = screening.critical_magnitude(result.magnitudes, result.accuracy, clean, 0.5)
    assert result.critical_magnitude == expected
    table = capsys.readouterr().out
    assert screening.format_table(result) in table

    chosen = tmp_path / "chosen"
    assert invfast("screen", path, "--transform", "zoom", "--classes", "2,0", "--out",
                   chosen) == 0  # fmt: skip
    result = read_json(chosen / "screening.json")
    assert [c["label"] for c in result["classes"]] == [0, 2]
    assert result["magnitudes"][0] == 1.0 and len(result["magnitudes"]) == 16  # the default

    overall = tmp_path / "overall"  # no class curves → no softmax pages
    assert invfast("screen", path, "--transform", "blur", "--values", "0,1", "--out",
                   overall) == 0  # fmt: skip
    assert {p.name for p in overall.iterdir()} == {"screening.json", "accuracy.png"}


def test_existing_out_is_refused_unless_overwrite(trained, tmp_path, capsys):
    path, _ckpt, _clean = trained
    out = tmp_path / "screen"
    assert invfast("screen", path, "--transform", "rotate", "--values", "0,90", "--per-class",
                   "--out", out) == 0  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert invfast("screen", path, "--transform", "rotate", "--values", "0,45", "--out", out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert invfast("screen", path, "--transform", "rotate", "--values", "0,45", "--out", out,
                   "--overwrite") == 0  # fmt: skip
    # the stale softmax page of the per-class run is gone
    assert {p.name for p in out.iterdir()} == {"screening.json", "accuracy.png"}
    assert read_json(out / "screening.json")["magnitudes"] == [0.0, 45.0]


# --------------------------------------------------------------------------- itn
def test_itn_short_run_writes_outputs_and_leaves_the_classifier(trained, tmp_path, monkeypatch):
    path, ckpt, clean = trained
    built = []
    real_build = checkpoint.build_model

    def spy_build(ck):
        built.append(real_build(ck))
        return built[-1]

    monkeypatch.setattr(checkpoint, "build_model", spy_build)
    out = tmp_path / "itn"
    assert invfast("itn", path, "--epochs", 2, "--target-accuracy", 0.7, "--batch-size", 32,
                   "--sweep-points", 3, "--grid-points", 2, "--seed", 1,
                   "--out", out) == 0  # fmt: skip
    assert {p.name for p in out.iterdir()} == {
        "itn_transformers.pt", "itn_losses.json", "itn_losses.png", "itn_grid.png",
        "itn_result.json",
    }  # fmt: skip
    for png in ("itn_losses.png", "itn_grid.png"):
        assert (out / png).read_bytes().startswith(PNG)
    (model,) = built
    state = model.state_dict()
    assert all(torch.equal(state[k], ckpt["state_dict"][k]) for k in ckpt["state_dict"])
    assert all(p.requires_grad for p in model.parameters())  # restored after freezing
    result = read_json(out / "itn_result.json")
    assert result["clean_accuracy"] == clean
    assert result["steps"] == 2 * 4  # 128 training images in batches of 32, two epochs
    assert result["source"]["fit_split"] == "train" and result["source"]["eval_images"] == 32
    assert result["source"]["classifier_sha256"] == ckpt["state_dict_sha256"]
    assert len(result["sweep"]) == 3 and "rotation_deg" in result["reach"]
    assert len(read_json(out / "itn_losses.json")["steps"]) == 8
    net = itn.load_transformers(out / "itn_transformers.pt")
    assert net.channels == 3


def test_itn_identity_init_gives_the_clean_accuracy(trained, tmp_path):
    path, _ckpt, clean = trained
    out = tmp_path / "itn"
    assert invfast("itn", path, "--init", "identity", "--epochs", 0, "--sweep-points", 3,
                   "--grid-points", 2, "--out", out) == 0  # fmt: skip
    result = read_json(out / "itn_result.json")
    assert result["steps"] == 0
    assert result["clean_accuracy"] == clean  # the ITN standardizes like invfast.core.transforms
    assert result["final_accuracy"] == clean  # random c through identity transformers
    for row in result["sweep"]:
        assert row["spatial_accuracy"] == row["color_accuracy"] == clean
        assert row["spatial"]["pixel_change"] == row["color"]["pixel_change"] == 0.0


def test_standardization_conventions_agree():
    """ITN's make_standardizer(spec) and the transforms' standardize=spec are one formula,
    for every form a checkpoint's input spec takes (mean/std in pixel units [0, 255])."""
    x = torch.randint(0, 256, (5, 3, 9, 7), dtype=torch.uint8)
    identity = transforms.get("identity")
    per_channel = {"mean": [120.0, 110.0, 100.0], "std": [60.0, 50.0, 70.0]}
    for recorded in ("per-image", "none", per_channel, {"mean": [127.5], "std": [64.0]}):
        ckpt = {"input": {"standardize": recorded}}
        spec = checkpoint.standardization(ckpt)
        expected = identity(x, standardize=spec)
        assert torch.equal(itn.make_standardizer(spec)(x.float()), expected), recorded


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("argv", "message"),
    [(["screen", "{missing}", "--transform", "rotate"], "no such checkpoint"),
     (["screen", "{garbage}", "--transform", "rotate"], "corrupt"),
     (["screen", "{truncated}", "--transform", "rotate"], "corrupt"),
     (["screen", "{ckpt}", "--transform", "spin"], "valid: translate-x, translate-y, rotate"),
     (["screen", "{ckpt}", "--transform", "rotate", "--values", "0:10:0"], "values"),
     (["screen", "{ckpt}", "--transform", "rotate", "--values", "a,b"], "values"),
     (["screen", "{ckpt}", "--transform", "rotate", "--values", "0:10:-1"], "values"),
     (["screen", "{ckpt}", "--transform", "scale-x", "--values", "1:-1:-0.5"], "sx"),
     (["screen", "{ckpt}", "--transform", "rotate", "--classes", "1,9"], "--classes"),
     (["screen", "{ckpt}", "--transform", "rotate", "--fraction", "0"], "--fraction"),
     (["screen", "{ckpt}", "--transform", "rotate", "--max-batch", "0"], "--max-batch"),
     (["screen", "{ckpt}", "--transform", "rotate", "--channels", "1"], "classifier takes"),
     (["itn", "{missing}"], "no such checkpoint"),
     (["itn", "{garbage}"], "corrupt"),
     (["itn", "{ckpt}", "--epochs", "-1"], "epochs"),
     (["itn", "{ckpt}", "--target-accuracy", "2"], "target_accuracy"),
     (["itn", "{ckpt}", "--batch-size", "0"], "--batch-size"),
     (["itn", "{ckpt}", "--data", "npz:{missing}"], "")],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    trained, tmp_path, capsys, argv, message
):
    path, _ckpt, _clean = trained
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    truncated = tmp_path / "truncated.pt"
    whole = path.read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    names = {"ckpt": path, "missing": tmp_path / "missing.pt", "garbage": garbage,
             "truncated": truncated}  # fmt: skip
    out = tmp_path / "out"
    argv = [a.format(**names) for a in argv]
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"invfast {argv[0]}: error: ")
    assert message in err
    assert not out.exists()
