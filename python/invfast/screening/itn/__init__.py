"""The Invariant Transformer Net (P2 §3.4 "Strategy 2").

A frozen classifier sits behind a colour transformer and a spatial transformer whose
matrices are small MLPs of control parameters c_s, c_c ~ U[0, 1]; training makes the
transformations as large as possible while the classifier still reaches the target
accuracy on the transformed images (per batch, the accuracy chooses between the magnitude
loss and the classification loss). ``measure_reach`` then reports, per parameter
(rotation, scale, translation, colour shift and gain), the largest transformation that
keeps the target accuracy.

Modules: ``model`` (transformers, warp and recolour, losses), ``trainer`` (the two-branch
training step), ``reach`` (affine decomposition, magnitude reached), ``run`` (one run and
its outputs). The formulas, and our reading where P2's equations are lost in the text, are
in docs/p2-screening-itn.md.
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
