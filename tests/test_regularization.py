"""invfast.learning.regularization: P3's DA / IR / WT losses (Eq. 4) and the ν search."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from invfast.core import groups
from invfast.learning import metrics, regularization
from p3_helpers import TinyMLP, images, labels, weight_tied

# --------------------------------------------------------------- invariance errors


@settings(max_examples=25)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 10.0))
def test_invariance_errors_match_their_formulas(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    a = scale * torch.randn(4, 5, generator=gen, dtype=torch.float64)
    b = scale * torch.randn(4, 5, generator=gen, dtype=torch.float64)
    logit = regularization.invariance_error(a, b, "logit")
    torch.testing.assert_close(logit, 0.5 * ((a - b) ** 2).sum(1))
    p, q = a.softmax(1), b.softmax(1)
    kl = regularization.invariance_error(a, b, "kl")
    torch.testing.assert_close(kl, (p * (p / q).log()).sum(1))
    assert bool((kl >= 0).all())
    norm = regularization.invariance_error(a, b, "logit-norm")
    torch.testing.assert_close(norm, ((a - b) ** 2).sum(1) / (a**2).sum(1))
    for kind in regularization.REGULARIZERS:
        assert float(regularization.invariance_error(a, a, kind).abs().max()) == 0.0


def test_logit_norm_is_scale_free_and_safe_at_zero():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(
        regularization.invariance_error(7 * a, 7 * b, "logit-norm"),
        regularization.invariance_error(a, b, "logit-norm"),
    )
    zero = regularization.invariance_error(torch.zeros(1, 4), torch.ones(1, 4), "logit-norm")
    assert torch.isfinite(zero).all()


def test_invariance_error_rejects_bad_arguments():
    with pytest.raises(ValueError, match="logit, kl, logit-norm"):
        regularization.invariance_error(torch.zeros(2, 3), torch.zeros(2, 3), "l2")
    with pytest.raises(ValueError, match="logits"):
        regularization.invariance_error(torch.zeros(2, 3), torch.zeros(2, 4))


def test_group_elements_are_uniform_and_seeded():
    draws = regularization.sample_elements(40_000, "R4", generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4).double() / 40_000
    assert counts.sub(0.25).abs().max() < 0.01
    again = regularization.sample_elements(
        40_000, groups.R4, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(draws, again)
    assert set(regularization.sample_elements(300, "T3").tolist()) == {0, 1, 2}


# ------------------------------------------------------------------ training loss


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("group", [groups.R4, groups.T3], ids=lambda g: g.name)
def test_da_loss_is_cross_entropy_on_per_sample_transformed_inputs(group):
    model = TinyMLP((1, 6, 6), classes=6, seed=1)
    x, y = images(8, seed=1), labels(8, seed=1)
    out = regularization.training_loss(model, x, y, group, "da", generator=seeded())
    elements = regularization.sample_elements(8, group, generator=seeded())
    assert torch.equal(out.elements, elements)
    want = F.cross_entropy(model(group.act(x, elements)), y)
    torch.testing.assert_close(out.loss, want)
    assert out.invariance is None and out.logits.shape == (8, 6)
    out.loss.backward()
    assert model.net[1].weight.grad is not None


@pytest.mark.parametrize("regularizer", regularization.REGULARIZERS)
def test_ir_loss_is_da_plus_nu_times_the_regularizer(regularizer):
    group = groups.R4
    model = TinyMLP((1, 6, 6), classes=6, seed=2)
    x, y = images(8, seed=2), labels(8, seed=2)
    out = regularization.training_loss(
        model, x, y, group, "ir", nu=2.5, regularizer=regularizer, generator=seeded(3)
    )
    gen = seeded(3)
    first = regularization.sample_elements(8, group, generator=gen)
    second = regularization.sample_elements(8, group, generator=gen)
    augmented = group.act(x, first)
    logits, moved = model(augmented), model(group.act(augmented, second))
    penalty = regularization.invariance_error(logits, moved, regularizer).mean()
    torch.testing.assert_close(out.task, F.cross_entropy(logits, y).detach())
    torch.testing.assert_close(out.invariance, penalty.detach())
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, y) + 2.5 * penalty)
    assert float(out.invariance) > 0
    # ν = 0 leaves the DA loss (same first draw from the same seed)
    zero = regularization.training_loss(model, x, y, group, "ir", nu=0.0, generator=seeded(3))
    da = regularization.training_loss(model, x, y, group, "da", generator=seeded(3))
    torch.testing.assert_close(zero.loss, da.loss)


def test_wt_mode_needs_a_model_tied_over_the_group():
    x, y = images(4, seed=4), labels(4, seed=4)
    tied = weight_tied("T3", seed=4)
    out = regularization.training_loss(tied, x, y, "T3", "wt", generator=seeded())
    da = regularization.training_loss(tied, x, y, "T3", "da", generator=seeded())
    torch.testing.assert_close(out.loss, da.loss)
    # regularizing an exactly invariant model adds nothing
    ir = regularization.training_loss(tied, x, y, "T3", "ir", nu=10.0, generator=seeded())
    assert float(ir.invariance) < 1e-8
    with pytest.raises(ValueError, match="weight-tied over R4"):
        regularization.training_loss(tied, x, y, "R4", "wt")
    with pytest.raises(ValueError, match="mlp5-wt"):
        regularization.training_loss(TinyMLP((1, 6, 6), classes=6), x, y, "T3", "wt")


def test_training_loss_rejects_bad_arguments():
    model = TinyMLP((1, 6, 6), classes=6)
    x, y = images(4), labels(4)
    with pytest.raises(ValueError, match="da, ir, wt"):
        regularization.training_loss(model, x, y, "R4", "aug")
    with pytest.raises(ValueError, match="nu"):
        regularization.training_loss(model, x, y, "R4", "ir", nu=-1.0)
    with pytest.raises(ValueError, match="nu"):
        regularization.training_loss(model, x, y, "R4", "ir", nu=math.inf)
    with pytest.raises(ValueError, match="regularizer"):
        regularization.training_loss(model, x, y, "R4", "ir", regularizer="cos")
    with pytest.raises(ValueError, match=r"y must be a \[4\]"):
        regularization.training_loss(model, x, y[:3], "R4", "da")
    with pytest.raises(TypeError, match="floating"):
        regularization.training_loss(model, x.to(torch.uint8), y, "R4", "da")


def test_invariance_regularization_learns_a_more_invariant_model_than_augmentation():
    # Same data, same seeds, 30 Adam steps: IR (ν = 5) ends with a much smaller LI than DA.
    x, y = images(64, seed=5), labels(64, classes=4, seed=5)
    results = {}
    for mode in ("da", "ir"):
        model = TinyMLP((1, 6, 6), classes=4, hidden=32, seed=6)
        optimizer = torch.optim.Adam(model.parameters(), lr=8e-3)
        gen = seeded(7)
        for _ in range(30):
            optimizer.zero_grad()
            loss = regularization.training_loss(model, x, y, "R4", mode, nu=5.0, generator=gen)
            loss.loss.backward()
            optimizer.step()
        results[mode] = metrics.logit_invariance(model, x, "R4").value
    assert results["ir"] < 0.2 * results["da"]


# ------------------------------------------------------------------------ ν search


def test_log_grid():
    grid = regularization.log_grid(1e-2, 1e3, 2)
    assert len(grid) == 11 and grid[0] == pytest.approx(1e-2) and grid[-1] == pytest.approx(1e3)
    assert all(b / a == pytest.approx(math.sqrt(10)) for a, b in itertools.pairwise(grid))
    with pytest.raises(ValueError):
        regularization.log_grid(0.0, 1.0)


def test_nu_search_keeps_the_smallest_passing_nu_and_stops_there():
    calls = []

    def fake(nu):  # SI grows with ν and passes 0.95 from ν = 19 on
        calls.append(nu)
        return nu / (nu + 1.0)

    result = regularization.nu_search(fake, target_si=0.95)
    assert result.met_target and result.nu == pytest.approx(10**1.5)
    assert calls == [nu for nu, _ in result.trials] and calls[-1] == result.nu  # stopped
    assert all(si < 0.95 for _, si in result.trials[:-1])
    refined = regularization.nu_search(fake, target_si=0.95, refine=8)
    assert 19.0 <= refined.nu < 19.0 * 1.05 and refined.si >= 0.95
    assert len(refined.trials) == len(result.trials) + 8


def test_nu_search_exhaustive_does_not_assume_monotonicity():
    table = {0.1: 0.5, 1.0: 0.97, 10.0: 0.9, 100.0: 0.99}
    result = regularization.nu_search(
        lambda nu: table[nu], grid=[100.0, 1.0, 10.0, 0.1], exhaustive=True
    )
    assert result.nu == 1.0 and len(result.trials) == 4
    assert [nu for nu, _ in result.trials] == [0.1, 1.0, 10.0, 100.0]


def test_nu_search_reports_failure_and_keeps_outcomes():
    outcomes = {
        nu: {"SI": metrics.MetricResult("SI", 0.5 + nu / 100, "", 1), "ckpt": f"nu{nu}"}
        for nu in (1.0, 2.0, 3.0)
    }
    result = regularization.nu_search(outcomes.__getitem__, grid=[1.0, 2.0, 3.0])
    assert not result.met_target and result.nu == 3.0 and result.si == pytest.approx(0.53)
    assert result.outcome["ckpt"] == "nu3.0"
    assert result.to_dict()["trials"][0] == [1.0, 0.51]


def test_nu_search_rejects_bad_arguments():
    with pytest.raises(ValueError, match="grid"):
        regularization.nu_search(lambda nu: 1.0, grid=[])
    with pytest.raises(ValueError, match="target_si"):
        regularization.nu_search(lambda nu: 1.0, target_si=1.5)
    with pytest.raises(ValueError, match="'SI'"):
        regularization.nu_search(lambda nu: {"acc": 1.0}, grid=[1.0])
