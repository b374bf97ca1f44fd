"""Per-neuron invariance and the across-category training paradigm.

Jang, Zaidi, Boix et al., "Robustness to Transformations Across Categories: Is Robustness
Driven by Invariant Neural Representations?" (arXiv:2007.00112): the invariance
coefficient I_k, active-neuron ablation and the choice of τ, the Goodfellow et al. 2009
comparison, training with a transformation shown for some categories only, strength
calibration, and the reports of ``invfast analyze`` and ``invfast compare``.
"""
