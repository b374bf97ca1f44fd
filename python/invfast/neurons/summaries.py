"""Summary statistics of per-neuron arrays for reports: means, medians and quantiles of
I_k, S_k and #A_k per group and τ, over the neurons where they are defined."""

from __future__ import annotations

import warnings

import numpy as np
import torch

GROUPS = ("seen", "unseen")
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def finite_stats(values: torch.Tensor) -> dict:
    """mean / median / quantiles of the finite values (None when there are none)."""
    v = values[torch.isfinite(values)].double()
    if v.numel() == 0:
        return {"mean": None, "median": None, "quantiles": None, "n": 0}
    q = torch.quantile(v, torch.tensor(QUANTILES, dtype=torch.float64)) if v.numel() else None
    return {
        "mean": float(v.mean()),
        "median": float(v.median()),
        "quantiles": [float(x) for x in q],
        "n": int(v.numel()),
    }


def _table_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of [..., K] (NaN = undefined): mean, median, quantiles, count of finite."""
    finite = np.isfinite(values)
    n = finite.sum(axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN
        return {
            "mean": np.nanmean(values, axis=-1),
            "median": np.nanmedian(values, axis=-1),
            "quantiles": np.moveaxis(np.nanquantile(values, QUANTILES, axis=-1), 0, -1),
            "n": n,
        }


def _row(stats: dict[str, np.ndarray], index: tuple) -> dict:
    if stats["n"][index] == 0:
        return {"mean": None, "median": None, "quantiles": None, "n": 0}
    return {
        "mean": float(stats["mean"][index]),
        "median": float(stats["median"][index]),
        "quantiles": [float(q) for q in stats["quantiles"][index]],
        "n": int(stats["n"][index]),
    }


def layer_summary(result, tau_index: int, image_active, image_groups) -> dict:
    inv = _table_stats(result.I.numpy())
    spec = _table_stats(result.S.numpy())
    act = _table_stats(result.active.numpy().astype(np.float64))
    per_image = None
    if image_active is not None:
        counts = image_active.numpy().astype(np.float64)  # [N, T]
        ids = image_groups.numpy()
        per_image = [_table_stats(counts[ids == g].T) for g in range(len(GROUPS))]
    groups = {}
    for g, group in enumerate(GROUPS):
        per_tau = []
        for i in range(result.taus.numel()):
            row = {
                "tau": float(result.taus[i]),
                "mean_I": _row(inv, (g, i))["mean"],
                "median_I": _row(inv, (g, i))["median"],
                "quantiles_I": _row(inv, (g, i))["quantiles"],
                "mean_S": _row(spec, (g, i))["mean"],
                "median_S": _row(spec, (g, i))["median"],
                "silent": int(result.silent[g, i]),
                "active_per_neuron": _row(act, (g, i)),
            }
            if per_image is not None:
                row["active_per_image"] = _row(per_image[g], (i,))
            per_tau.append(row)
        groups[group] = {
            "pairs": int(result.pairs[g]),
            "by_tau": per_tau,
            "at_tau": per_tau[tau_index],
        }
    return {"name": result.name, "neurons": int(result.I.shape[2]), "groups": groups}
