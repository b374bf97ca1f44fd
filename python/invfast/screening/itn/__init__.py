r"""The Invariant Transformer Net (P2 §3.4 "Strategy 2", docs/p2-screening-itn.md).

A frozen classifier f sits behind a colour transformer and a spatial transformer whose
matrices are small MLPs of control parameters; training makes the transformations as large
as possible while f still classifies the transformed images at the target accuracy.

The formulas implemented (x ∈ [0, 255]^{C×H×W} an image, y its label, s the classifier's
standardization, B the batch size, i indexes the samples of a batch):

Control parameters: c_s,i and c_c,i ~ U[0, 1], independent, one pair per sample.

Transformers (P2 §3.4: "two fully connected layers with rectified linear activation"), hidden
width h, residual around the identity:
    θ(c_s) = [I_2 | 0] + W_2^s relu(W_1^s c_s + b_1^s) + b_2^s      reshaped 2×3
    K(c_c) = [I_C | 0] + W_2^c relu(W_1^c c_c + b_1^c) + b_2^c      reshaped C×(C+1)
With C = 3 channels K is P2's 3×4 colour matrix; a 1-channel image gets a 1×2 matrix
(contrast and brightness). ``init="identity"`` sets W_2 = 0 and b_2 = 0, so both matrices
are exactly the identity for every c; ``init="random"`` draws every layer like
``nn.Linear`` (U(±1/√fan_in)) with the last layer scaled by 0.1, close to the identity.

Transformed image, colour first so that the spatial zero fill stays black:
    K = [G | b]:  x'_p = clamp(G x_p + 255 b, 0, 255)                  every pixel p
    x̃ = grid_sample(x', affine_grid(θ)), bilinear, zero fill, align_corners=False
θ maps output coordinates to input coordinates in [-1, 1]² (Jaderberg et al. 2015). Rows
whose θ is exactly [I | 0] return x' bit for bit (grid_sample's identity resampling rounds
at ~1e-4) while keeping grid_sample's gradient.
    logits = f(s(x̃))

Extended matrices (P2 §3.4): Ā_s = [θ ; 0 0 1] ∈ R^{3×3}, Ā_c = [K ; 0 … 0 1] ∈ R^{(C+1)×(C+1)}.
Random unit vectors V = {v_1, …, v_n} uniform on the unit sphere of R^3 (resp. R^{C+1}),
drawn afresh each step (n = ``unit_vectors``). Displacement of sample i:
    m_i = (1/n) Σ_j ‖Ā(c_i) v_j − v_j‖_2
Magnitude term (docs/p2-screening-itn.md, "−mean ‖A v − v‖"):   L_mag = −(1/B) Σ_i m_i
Diversity term:                                   L_div = (1/B) Σ_i (1 − c_i) m_i
Transformer loss:  L_T = L_mag + μ L_div  (μ = ``diversity_weight``, default 1), which for
μ = 1 is L_T = −(1/B) Σ_i c_i m_i.
Per-batch switch (P2 §3.4), with batch accuracy a = (1/B) Σ_i [argmax logits_i = y_i]:
    L = L_S + λ L_C                  if a ≥ a_target   (increase the magnitude)
    L = (1/B) Σ_i −log softmax(logits_i)_{y_i}   otherwise (restore the classification)
λ = ``color_weight`` (P2: "to increase the influence of color transformations", default 5).
Only the transformers' weights are trained (Adam); f stays in eval mode and gets no gradients.

Our reading where P2's equations are lost in the text:
- the magnitude loss is the negative mean Euclidean displacement of the random unit vectors
  by the extended matrix ("the more often and the further the matrix projects one of the
  elements in V away from its original position, the more this loss decreases");
- "incorporating the parameters c to the loss, where c_i describes the i-th value of c" is
  read as weighting the displacement of sample i by its c_i: displacement is rewarded in
  proportion to c, so under the accuracy switch large c get large transformations and small
  c stay near the identity (P2 Fig. 19, "increasing magnitude for increasing c_s"). We write
  it as the magnitude term −mean ‖A v − v‖ plus the diversity term (1 − c_i) m_i, so μ = 0 gives the
  plain −mean ‖A v − v‖;
- ‖d‖ has no gradient at d = 0, so the identity would be a dead point of the magnitude
  step: at exactly d = 0 we take the subgradient u_j · d with u_j a random unit vector
  drawn with v_j (value 0, gradient u_j).

Magnitude reached (``measure_reach``): for c on a grid of [0, 1], the accuracy of f on the
evaluation data with only the spatial transformer at c_s = c (colour off), and with only the
colour transformer at c_c = c (spatial off). Each matrix is decomposed:
- spatial, θ = [A | t]: the map of image content in pixel coordinates (y down) is
  L = D A⁻¹ D⁻¹ with D = diag(W/2, H/2), its translation τ = −D A⁻¹ t. Polar decomposition
  L = R P (SVD L = U Σ Vᵀ, R = U Vᵀ): rotation = −atan2(R₁₀, R₀₀) in degrees, anticlockwise
  on screen; scale = the singular values Σ (image magnification, < 1 zooms out);
  translation = ‖τ‖ in pixels;
- colour, K = [G | b]: colour shift = 255 · max_k |b_k| (pixel units), gain = the singular
  values of G;
- both: the mean absolute pixel change |x̃ − x| over the evaluation images (pixel units), which
  unlike the matrix entries sees the clamp to [0, 255] and the zero fill.
The magnitude reached is the extreme of each quantity over the grid points whose accuracy is
at least the target (``None`` when no grid point keeps the target).
"""

from invfast.screening.itn.model import (
    BRANCH_CLASSIFICATION,
    BRANCH_MAGNITUDE,
    FORMAT,
    INITS,
    ColorTransformer,
    InvariantTransformerNet,
    ITNConfig,
    SpatialTransformer,
    choose_branch,
    displacement,
    extend,
    make_standardizer,
    per_image_standardize,
    random_unit_vectors,
    recolor,
    transformer_loss,
    warp,
)
from invfast.screening.itn.reach import (
    ITNResult,
    decompose_color,
    decompose_spatial,
    measure_reach,
)
from invfast.screening.itn.run import (
    format_reach,
    load_transformers,
    plot_grid,
    plot_losses,
    run_itn,
    save_transformers,
    write_outputs,
)
from invfast.screening.itn.trainer import ITNTrainer

__all__ = [
    "BRANCH_CLASSIFICATION",
    "BRANCH_MAGNITUDE",
    "FORMAT",
    "INITS",
    "ColorTransformer",
    "ITNConfig",
    "ITNResult",
    "ITNTrainer",
    "InvariantTransformerNet",
    "SpatialTransformer",
    "choose_branch",
    "decompose_color",
    "decompose_spatial",
    "displacement",
    "extend",
    "format_reach",
    "load_transformers",
    "make_standardizer",
    "measure_reach",
    "per_image_standardize",
    "plot_grid",
    "plot_losses",
    "random_unit_vectors",
    "recolor",
    "run_itn",
    "save_transformers",
    "transformer_loss",
    "warp",
    "write_outputs",
]
