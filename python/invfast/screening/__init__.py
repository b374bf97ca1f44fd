"""Sensitivity screening and the Invariant Transformer Net.

Bunne, Rahmann and Wolf, "Studying Invariances of Trained Convolutional Neural Networks"
(arXiv:1803.05963): accuracy and top-class softmax over transformation magnitudes with
the critical magnitude (``sensitivity``), and the largest spatial and colour
transformations a frozen classifier tolerates (``itn``).
"""

from invfast.screening.sensitivity import (
    SCREENED_TRANSFORMS,
    ClassScreening,
    ScreeningResult,
    critical_magnitude,
    format_table,
    parse_magnitudes,
    plot_accuracy,
    plot_softmax,
    screen,
    screened_transform,
    transform_functions,
    write_report,
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
