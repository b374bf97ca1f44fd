"""Invariance learned with and without weight tying.

Moskalev et al., "On genuine invariance learning without weight-tying" (arXiv:2308.03904):
the invariance metrics DI, LI and SI, the sensitivity σ_max, invariance-regularized and
weight-tied training, and data drift.
"""
