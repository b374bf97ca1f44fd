"""invfast.learning.metrics: DI, LI, SI, integrated gradients and σ_max (P3 §3.2, §4.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from invfast.core import groups
from invfast.learning import metrics
from p3_helpers import LinearModel, TinyMLP, chunks, images, labels, weight_tied

GROUPS = [groups.R4, groups.T3]


# ------------------------------------------------------------------ DI, LI, accuracy


def brute_force_orbit(model, x, y, group):
    """Per (x, g) loops, float64, straight from P3 Eq. 1 and Eq. 2."""
    li, di, correct = [], [], []
    with torch.no_grad():
        for i in range(x.shape[0]):
            fx = model(x[i : i + 1]).double()[0]
            for k in group.elements():
                fgx = model(group.act(x[i : i + 1], k)).double()[0]
                li.append(0.5 * float(((fx - fgx) ** 2).sum()))
                p, q = F.softmax(fx, 0), F.softmax(fgx, 0)
                di.append(float((p * (p.log() - q.log())).sum()))
                correct.append(float(fgx.argmax() == y[i]))
    return np.mean(li), np.mean(di), np.mean(correct)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_orbit_metrics_match_brute_force(group):
    model = TinyMLP((1, 6, 6), classes=6, seed=1)
    x, y = images(10, seed=2) * 3, labels(10, seed=2)
    result = metrics.orbit_metrics(model, (x, y), group)
    li, di, acc = brute_force_orbit(model, x, y, group)
    assert result["LI"].value == pytest.approx(li, rel=1e-5)
    assert result["DI"].value == pytest.approx(di, rel=1e-4, abs=1e-9)
    assert result["accuracy"].value == pytest.approx(acc)
    assert result["LI"].value > 1e-3 and result["DI"].value > 1e-6  # not trivially zero
    assert result["LI"].per_element[0] == 0.0  # g = e compares f(x) with itself
    assert result["LI"].n_images == 10 and result["LI"].group == group.name
    assert "mean over images x" in result["LI"].convention
    assert "identity included" in result["DI"].convention


def test_excluding_identity_rescales_by_order():
    model = TinyMLP((1, 6, 6), seed=3)
    x = images(6, seed=3)
    with_e = metrics.logit_invariance(model, x, "R4")
    without_e = metrics.logit_invariance(model, x, "R4", include_identity=False)
    assert without_e.value == pytest.approx(with_e.value * 4 / 3, rel=1e-12)
    assert "\\ {e}" in without_e.convention


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_weight_tied_model_has_zero_li_and_di(group):
    model = weight_tied(group.name)
    x, y = images(12, seed=4), labels(12, seed=4)
    result = metrics.orbit_metrics(model, (x, y), group)
    with torch.no_grad():
        scale = float(model(x).double().square().sum(dim=1).mean())
    assert scale > 1.0  # logits are far from zero, so LI = 0 is not a small-logit accident
    assert result["LI"].value <= 1e-10 * scale
    assert 0.0 <= result["DI"].value <= 1e-10
    # every element of the orbit is classified the same way
    assert len(set(result["accuracy"].per_element)) == 1
    # a plain MLP on the same data is far from invariant: the test can fail
    plain = metrics.logit_invariance(TinyMLP((1, 6, 6), classes=6), x, group)
    assert plain.value > 1e-3


@pytest.mark.parametrize(
    "metric",
    [
        lambda m, d: metrics.orbit_metrics(m, d, "R4"),
        lambda m, d: {"SI": metrics.saliency_invariance(m, d, "T3", steps=6)},
        lambda m, d: {"s": metrics.jacobian_sigma_max(m, d, tol=0.0, max_iters=30)},
    ],
    ids=["orbit", "SI", "sigma_max"],
)
def test_one_batch_or_many_give_the_same_metrics(metric):
    model = TinyMLP((1, 6, 6), classes=6, seed=5)
    x, y = images(11, seed=5), labels(11, seed=5)
    whole = metric(model, (x, y))
    for sizes in ([1] * 11, [4, 2, 5], [3]):
        split = metric(model, chunks(x, y, sizes))
        for key, result in whole.items():
            assert split[key].value == pytest.approx(result.value, rel=1e-6, abs=1e-12), key
            assert split[key].n_images == 11


def test_data_formats_and_max_images():
    model = TinyMLP((1, 6, 6), seed=6)
    x, y = images(8, seed=6), labels(8, classes=5, seed=6)
    reference = metrics.orbit_metrics(model, (x[:5], y[:5]), "R4")
    variants = [
        [(x[:3], y[:3]), (x[3:], y[3:])],
        [{"images": x[:4], "labels": y[:4]}, {"images": x[4:], "labels": y[4:]}],
        (x, y, torch.arange(8)),
    ]
    for data in variants:
        got = metrics.orbit_metrics(model, data, "R4", max_images=5)
        assert got["LI"].n_images == 5
        assert got["LI"].value == pytest.approx(reference["LI"].value, rel=1e-6)
        assert got["accuracy"].value == reference["accuracy"].value
    unlabelled = metrics.orbit_metrics(model, [x[:3], x[3:5]], "R4")
    assert "accuracy" not in unlabelled
    assert "accuracy" not in metrics.orbit_metrics(model, (x[:5], None), "R4")
    assert unlabelled["DI"].value == pytest.approx(reference["DI"].value, rel=1e-6)


def test_preprocess_and_training_mode_restored():
    model = TinyMLP((1, 6, 6), seed=7)
    model.train()
    raw = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)

    def standardize(t):
        return (t.float() - 100.0) / 50.0

    got = metrics.logit_invariance(model, raw, "R4", preprocess=standardize)
    want = metrics.logit_invariance(model, standardize(raw), "R4")
    assert got.value == want.value
    assert model.training


def test_metric_errors():
    model = TinyMLP((1, 6, 6), seed=8)
    with pytest.raises(ValueError, match="no images"):
        metrics.logit_invariance(model, [], "R4")
    with pytest.raises(ValueError, match="labels"):
        metrics.orbit_metrics(model, (images(3), labels(2)), "R4")
    with pytest.raises(ValueError, match="divisible by 3"):
        metrics.orbit_metrics(TinyMLP((1, 5, 5)), images(2, size=5), "T3")
    with pytest.raises(ValueError, match="needs labelled data"):
        metrics.saliency_invariance(model, images(2), "R4")
    with pytest.raises(TypeError, match="each batch"):
        metrics.orbit_metrics(model, [3], "R4")
    with pytest.raises(ValueError, match="max_images"):
        metrics.orbit_metrics(model, images(2), "R4", max_images=0)


# ------------------------------------------------------------- integrated gradients


def test_integrated_gradients_of_a_linear_model_are_exact():
    model = LinearModel((2, 3, 3), classes=4)
    x = images(5, size=3, channels=2, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 0])
    for steps, method in ((1, "midpoint"), (7, "gausslegendre")):
        ig = metrics.integrated_gradients(model, x, target, steps=steps, method=method)
        want = x.flatten(1) * model.weight[target]
        torch.testing.assert_close(ig.flatten(1), want, rtol=1e-12, atol=1e-12)


def completeness_error(model, x, target, steps, method):
    ig = metrics.integrated_gradients(model, x, target, steps=steps, method=method)
    with torch.no_grad():
        gap = (
            model(x).gather(1, target[:, None])[:, 0]
            - model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
        )
    return (ig.flatten(1).sum(dim=1) - gap).abs().max().item()


@pytest.mark.parametrize(
    ("method", "coarse", "fine", "factor"),
    [("midpoint", 8, 64, 30.0), ("gausslegendre", 3, 12, 1e3)],
)
def test_completeness_error_shrinks_with_steps_on_a_smooth_model(method, coarse, fine, factor):
    # tanh network: the path integrand is smooth, so the midpoint rule errs O(1/steps²)
    # and Gauss–Legendre faster still.
    model = TinyMLP((1, 4, 4), classes=3, activation="tanh", dtype=torch.float64, seed=9)
    x = 2.0 * images(6, size=4, dtype=torch.float64, seed=9)
    target = labels(6, classes=3, seed=9)
    err_coarse = completeness_error(model, x, target, coarse, method)
    err_fine = completeness_error(model, x, target, fine, method)
    assert err_coarse > 1e-8  # the coarse rule is visibly inexact
    assert err_fine <= err_coarse / factor


@pytest.mark.parametrize("steps", [16, 128])
def test_completeness_on_a_relu_model_within_the_midpoint_bound(steps):
    # Along the path the gradient of a ReLU net is piecewise constant; the midpoint rule
    # then errs by at most (1 / (2·steps)) × its total variation V in α, summed over the
    # path. V is measured on a fine grid, so the tolerance shrinks as 1/steps.
    model = TinyMLP((1, 4, 4), classes=3, dtype=torch.float64, seed=10)
    x = 3.0 * images(4, size=4, dtype=torch.float64, seed=10)
    target = labels(4, classes=3, seed=10)
    alphas = torch.linspace(0, 1, 20001, dtype=torch.float64)
    for i in range(4):
        path = (alphas[:, None] * x[i].flatten()).view(-1, 1, 4, 4).requires_grad_(True)
        model(path)[:, target[i]].sum().backward()
        integrand = (path.grad.flatten(1) * x[i].flatten()).sum(dim=1)
        variation = integrand.diff().abs().sum().item()
        err = completeness_error(model, x[i : i + 1], target[i : i + 1], steps, "midpoint")
        assert err <= 1.01 * variation / (2 * steps) + 1e-12


def test_internal_batch_size_does_not_change_integrated_gradients():
    model = TinyMLP((1, 4, 4), classes=3, dtype=torch.float64, seed=11)
    x = images(5, size=4, dtype=torch.float64, seed=11)
    target = labels(5, classes=3, seed=11)
    results = [
        metrics.integrated_gradients(model, x, target, steps=9, internal_batch_size=size)
        for size in (1, 7, 45, 1000)
    ]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-13, atol=1e-15)


def test_integrated_gradients_errors():
    model = TinyMLP((1, 4, 4), classes=3)
    x = images(2, size=4)
    with pytest.raises(ValueError, match="steps"):
        metrics.integrated_gradients(model, x, 0, steps=0)
    with pytest.raises(ValueError, match="method"):
        metrics.integrated_gradients(model, x, 0, method="simpson")
    with pytest.raises(ValueError, match="target"):
        metrics.integrated_gradients(model, x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="floating"):
        metrics.integrated_gradients(model, x.to(torch.uint8), 0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        metrics.integrated_gradients(model, x, 0, internal_batch_size=0)


# ------------------------------------------------------------------ saliency and SI


@pytest.mark.parametrize(
    ("padding", "scipy_mode"), [("circular", "wrap"), ("reflect", "mirror"), ("zeros", "constant")]
)
def test_gaussian_filter_matches_scipy(padding, scipy_mode):
    maps = torch.rand(3, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = metrics.gaussian_filter(maps, 3, 1.0, padding)
    for i in range(3):
        # truncate=1 with σ=1 gives scipy's radius-1, 3-tap kernel
        want = ndimage.gaussian_filter(maps[i].numpy(), 1.0, mode=scipy_mode, truncate=1.0)
        np.testing.assert_allclose(got[i].numpy(), want, rtol=1e-12)


def test_saliency_map_thresholds_then_filters():
    # For f = W x the attribution to the target is x ⊙ W[target] whatever the steps.
    model = LinearModel((2, 5, 5), classes=3, seed=12)
    x = images(2, size=5, channels=2, dtype=torch.float64, seed=12)
    target = torch.tensor([2, 0])
    maps = metrics.saliency_map(model, x, target, steps=3)
    for i in range(2):
        magnitude = (x[i].flatten() * model.weight[target[i]].detach()).abs().view(2, 5, 5).sum(0)
        kept = torch.where(magnitude >= 0.9 * magnitude.max(), magnitude, 0.0).numpy()
        want = ndimage.gaussian_filter(kept, 1.0, mode="wrap", truncate=1.0)
        np.testing.assert_allclose(maps[i].detach().numpy(), want, rtol=1e-10, atol=1e-14)
        assert (kept > 0).sum() < 25  # the threshold removed something


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_saliency_invariance_is_one_when_saliency_is_provably_equivariant(group):
    # Why SI = 1 here, exactly in real arithmetic:
    # 1. The weight-tied model is invariant, f(Px) = f(x), and every g acts on the input by
    #    a permutation matrix P (orthogonal). Differentiating, Pᵀ∇f(Px) = ∇f(x), so
    #    ∇f(Px) = P∇f(x): the gradient is equivariant.
    # 2. The zero baseline is fixed by P and the straight path to Px is P times the path
    #    to x, so IG(Px) = Px ⊙ ∫P∇f(αx)dα = P IG(x).
    # 3. |·|, the channel sum and "keep ≥ 0.9·max" act pixel by pixel with a
    #    permutation-invariant max, so they commute with P.
    # 4. The 3×3 Gaussian is symmetric under 90° rotations and the circular padding is
    #    preserved by both rotations of a square and cyclic shifts, so the filter commutes
    #    with R4 and T3.
    # Hence m(gx) = g m(x), g⁻¹ m(gx) = m(x) and every cosine is 1.
    model = weight_tied(group.name, seed=13)
    x, y = images(5, seed=13), labels(5, seed=13)
    result = metrics.saliency_invariance(model, (x, y), group, steps=8)
    assert result.value == pytest.approx(1.0, abs=1e-6)
    assert min(result.per_element) == pytest.approx(1.0, abs=1e-6)
    assert result.details["zero_map_pairs"] == 0
    assert result.details["steps"] == 8 and result.details["threshold"] == 0.9
    realigned = metrics.saliency_orbit(model, x, y, group, steps=8)
    for k in group.elements():
        torch.testing.assert_close(realigned[:, k], realigned[:, 0], rtol=1e-4, atol=1e-6)
    # The same measurement on a model that is not invariant is clearly below 1.
    plain = metrics.saliency_invariance(TinyMLP((1, 6, 6), classes=6), (x, y), group, steps=8)
    assert plain.value < 0.9


def test_saliency_target_pred_and_zero_maps():
    model = weight_tied("R4", seed=14)
    x = images(3, seed=14)
    result = metrics.saliency_invariance(model, x, "R4", target="pred", steps=4)
    assert result.value == pytest.approx(1.0, abs=1e-6) and result.details["target"] == "pred"
    # An all-zero image has IG = 0 everywhere: both maps are zero and count as identical.
    zeros = metrics.saliency_invariance(model, torch.zeros(2, 1, 6, 6), "R4", target="pred")
    assert zeros.value == 1.0 and zeros.details["zero_map_pairs"] == 2 * 4


def test_saliency_errors():
    model = TinyMLP((1, 4, 4), classes=3)
    x = images(2, size=4)
    with pytest.raises(ValueError, match="threshold"):
        metrics.saliency_map(model, x, 0, threshold=1.5)
    with pytest.raises(ValueError, match="odd"):
        metrics.saliency_map(model, x, 0, filter_size=2)
    with pytest.raises(ValueError, match="padding"):
        metrics.saliency_map(model, x, 0, padding="wrap")
    with pytest.raises(ValueError, match="target"):
        metrics.saliency_invariance(model, x, "R4", target="true")


# ----------------------------------------------------------------------------- σ_max


def full_jacobian_sigma(model, x):
    out = []
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda t: model(t[None])[0], x[i])
        out.append(torch.linalg.svdvals(jac.reshape(jac.shape[0], -1)).max())
    return torch.stack(out)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_power_iteration_matches_svdvals_of_the_full_jacobian(activation):
    model = TinyMLP((2, 4, 4), classes=5, activation=activation, dtype=torch.float64, seed=15)
    x = 2.0 * images(6, size=4, channels=2, dtype=torch.float64, seed=15)
    sigma, converged = metrics.sigma_max_batch(model, x, max_iters=3000, tol=1e-14)
    want = full_jacobian_sigma(model, x)
    assert bool(converged.all())
    torch.testing.assert_close(sigma, want, rtol=1e-7, atol=0)
    result = metrics.jacobian_sigma_max(model, x, max_iters=3000, tol=1e-14)
    assert result.value == pytest.approx(float(want.mean()), rel=1e-7)
    assert result.details["max"] == pytest.approx(float(want.max()), rel=1e-7)
    assert result.details["not_converged"] == 0


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_exact_sigma_max_equals_svdvals_and_auto_picks_it(activation):
    model = TinyMLP((2, 4, 4), classes=5, activation=activation, dtype=torch.float64, seed=19)
    x = 2.0 * images(6, size=4, channels=2, dtype=torch.float64, seed=19)
    want = full_jacobian_sigma(model, x)
    torch.testing.assert_close(metrics.sigma_max_exact_batch(model, x), want, rtol=1e-12, atol=0)
    auto = metrics.jacobian_sigma_max(model, x)
    power = metrics.jacobian_sigma_max(model, x, method="power", max_iters=3000, tol=1e-14)
    assert (auto.details["method"], power.details["method"]) == ("exact", "power")
    assert auto.value == pytest.approx(float(want.mean()), rel=1e-12)
    assert power.value == pytest.approx(auto.value, rel=1e-7)
    with pytest.raises(ValueError, match="method must be"):
        metrics.jacobian_sigma_max(model, x, method="svd")


def test_auto_sigma_max_uses_power_iteration_for_many_outputs():
    model = LinearModel((1, 3, 3), classes=metrics.EXACT_SIGMA_MAX_OUTPUTS + 1, seed=3)
    x = images(2, size=3, dtype=torch.float64, seed=3)
    result = metrics.jacobian_sigma_max(model, x, max_iters=5000, tol=1e-15)
    assert result.details["method"] == "power"
    want = float(torch.linalg.svdvals(model.weight.detach()).max())
    assert result.value == pytest.approx(want, rel=1e-6)


@settings(max_examples=10)
@given(classes=st.integers(1, 6), seed=st.integers(0, 1000))
def test_power_iteration_on_linear_models(classes, seed):
    model = LinearModel((1, 3, 3), classes=classes, seed=seed)
    x = images(2, size=3, dtype=torch.float64, seed=seed)
    sigma, _ = metrics.sigma_max_batch(model, x, max_iters=5000, tol=1e-15, seed=seed)
    want = torch.linalg.svdvals(model.weight.detach()).max()
    torch.testing.assert_close(sigma, want.expand(2), rtol=1e-6, atol=0)


def test_sigma_max_of_a_flat_model_is_zero():
    model = TinyMLP((1, 4, 4), classes=3, seed=18)
    with torch.no_grad():
        model.net[1].bias.fill_(-1e3)  # every first-layer ReLU is off: J = 0
    sigma, converged = metrics.sigma_max_batch(model, images(3, size=4))
    assert sigma.tolist() == [0.0, 0.0, 0.0] and bool(converged.all())


def test_sigma_max_is_independent_of_batching_and_seeded():
    model = TinyMLP((1, 5, 5), classes=4, seed=16)
    x = images(5, size=5, seed=16)
    together, _ = metrics.sigma_max_batch(model, x, max_iters=40, tol=0.0)
    for i in range(5):
        alone, _ = metrics.sigma_max_batch(
            model, x[i : i + 1], max_iters=40, tol=0.0, first_index=i
        )
        assert alone.item() == pytest.approx(together[i].item(), rel=1e-6)
    # truncated early, a different start vector gives a different (lower) estimate
    other, _ = metrics.sigma_max_batch(model, x, max_iters=1, tol=0.0, seed=1)
    first, _ = metrics.sigma_max_batch(model, x, max_iters=1, tol=0.0, seed=0)
    assert not torch.equal(other, first)
    with pytest.raises(ValueError, match="max_iters"):
        metrics.sigma_max_batch(model, x, max_iters=0)


def test_evaluate_reports_every_table_1_number():
    model = weight_tied("T3", seed=17)
    x, y = images(4, seed=17), labels(4, seed=17)
    out = metrics.evaluate(
        model,
        [(x, y)],
        "T3",
        si_images=2,
        saliency_options={"steps": 4},
        sigma_options={"max_iters": 20},
    )
    assert set(out) == {"LI", "DI", "SI", "sigma_max", "accuracy", "accuracy_clean"}
    assert out["SI"].n_images == 2 and out["LI"].n_images == 4
    assert all(math.isfinite(r.value) for r in out.values())
    assert out["SI"].to_dict()["per_element"] == list(out["SI"].per_element)
