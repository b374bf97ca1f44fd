"""Sensitivity screening and the Invariant Transformer Net.

Bunne, Rahmann and Wolf, "Studying Invariances of Trained Convolutional Neural Networks"
(arXiv:1803.05963): accuracy and top-class softmax over transformation magnitudes with
the critical magnitude (``sensitivity``), and the largest spatial and colour
transformations a frozen classifier tolerates (``itn``).
"""

from invfast import _moved
from invfast.screening.report import format_table, plot_accuracy, plot_softmax, write_report
from invfast.screening.sensitivity import (
    SCREENED_TRANSFORMS,
    ClassScreening,
    ScreeningResult,
    critical_magnitude,
    parse_magnitudes,
    screen,
    screened_transform,
    transform_functions,
)

__all__ = [
    "SCREENED_TRANSFORMS",
    "ClassScreening",
    "ScreeningResult",
    "critical_magnitude",
    "format_table",
    "parse_magnitudes",
    "plot_accuracy",
    "plot_softmax",
    "screen",
    "screened_transform",
    "transform_functions",
    "write_report",
]

_RENAMED = {
    "unpack_batch": "invfast.core.data.batches:unpack_batch",
    "model_device": "invfast.core.runtime.device:model_device",
    "write_atomic": "invfast.core.runtime.outputs:write_bytes",
    "save_figure": "invfast.core.runtime.figures:save_figure",
}


def __getattr__(name: str):
    return _moved.old_attribute(__name__, name, _RENAMED)
