"""Sensitivity screening over transformation magnitudes (P2 §3.3 "Strategy 1").

For a transformation and a list of magnitudes m_1..m_M, every test image x is classified
clean and once per magnitude, and the screening reports:

- ``accuracy[j]``: top-1 accuracy over all images at magnitude m_j (P2 §3.3, first measure);
- per true class k (all classes, or the chosen ones) the class accuracy and the mean softmax
  p̄_k(m_j) = mean over images x of class k of softmax(f(T_{m_j} x)) (P2 §3.3, second measure,
  the curves of P2 Fig. 6/11). As in P2 §4.1, three predicted classes are drawn: the three
  with the highest mean softmax *at any magnitude* (rank by max_j p̄_k(m_j)[q], ties to the
  lower class index), and "others" is, at each magnitude, the maximum of p̄_k(m_j)[q] over
  every remaining class q;
- the critical magnitude, overall and per class: with threshold t = fraction · clean accuracy,
  walk the magnitudes in the order given and stop at the first j with accuracy[j] < t.
  If j = 0 the critical magnitude is m_1 (already below at the first magnitude, nothing to
  interpolate); otherwise the accuracy is interpolated linearly between (m_{j-1}, a_{j-1})
  and (m_j, a_j), where a_{j-1} ≥ t > a_j:
  m* = m_{j-1} + (a_{j-1} − t) / (a_{j-1} − a_j) · (m_j − m_{j-1}).
  If the accuracy never falls below t the critical magnitude is ``None`` (reported as
  "never"). Order two-sided ranges from the identity outwards (run 0:-20 and 0:20 apart).

Streaming: accumulators are [classes, magnitudes + 1, num_classes] float64 softmax sums and
int64 counts, whatever the number of images. Each batch is expanded into the rows
(clean, m_1, …, m_M) × images and cut into chunks of at most ``max_batch`` rows: each chunk is
one ``transform_fn`` call (all its magnitudes at once, one magnitude per row) and one forward.
Rows of one image share its id, so random transforms draw the same noise at every magnitude.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from invfast.core import transforms
from invfast.core.data.batches import unpack_batch
from invfast.core.runtime.device import model_device

TransformFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
StandardizeFn = Callable[[torch.Tensor], torch.Tensor]

TOP_CLASSES = 3
_OP = "screen"


# --------------------------------------------------------------------------- result
@dataclass
class ClassScreening:
    """Screening curves of the images of one true class."""

    label: int
    name: str | None
    count: int
    clean_accuracy: float
    accuracy: list[float]  # per magnitude
    critical_magnitude: float | None
    top_classes: list[int]  # the (up to) three most predicted classes, P2 §4.1
    top_softmax: list[list[float]]  # [len(top_classes)][magnitudes], mean softmax
    others_softmax: list[float] | None  # per magnitude: max mean softmax of the other classes
    clean_top_softmax: list[float] = field(default_factory=list)  # the same classes, clean


@dataclass
class ScreeningResult:
    """Everything a screening measured; ``to_dict()`` is plain JSON."""

    transform: str
    parameter: str
    magnitudes: list[float]
    fraction: float
    count: int
    num_classes: int
    clean_accuracy: float
    accuracy: list[float]
    critical_magnitude: float | None
    classes: list[ClassScreening]
    source: dict = field(default_factory=dict)  # checkpoint, data, seed (``invfast screen``)

    @property
    def threshold(self) -> float:
        return self.fraction * self.clean_accuracy

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ScreeningResult:
        data = dict(data)
        data["classes"] = [ClassScreening(**c) for c in data.get("classes", [])]
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


# --------------------------------------------------------------------------- helpers
def critical_magnitude(
    magnitudes: Sequence[float],
    accuracy: Sequence[float],
    clean_accuracy: float,
    fraction: float = 0.5,
) -> float | None:
    """First magnitude where accuracy falls below ``fraction · clean_accuracy`` (module doc).

    Linear interpolation between the last magnitude at or above the threshold and the first
    below it; ``magnitudes[0]`` when already below at the first; ``None`` when never below.
    """
    if len(magnitudes) != len(accuracy):
        raise ValueError(
            f"critical_magnitude: {len(magnitudes)} magnitudes but {len(accuracy)} accuracies"
        )
    threshold = fraction * clean_accuracy
    for j, a in enumerate(accuracy):
        if a < threshold:
            if j == 0:
                return float(magnitudes[0])
            m0, m1, a0 = float(magnitudes[j - 1]), float(magnitudes[j]), float(accuracy[j - 1])
            return m0 + (a0 - threshold) / (a0 - a) * (m1 - m0)
    return None


_RANGE = re.compile(r"^\s*([^:]+):([^:]+):([^:]+)\s*$")


def parse_magnitudes(spec: str) -> list[float]:
    """``"start:stop:step"`` (stop included when it lies on the grid) or ``"a,b,c"``."""
    match = _RANGE.match(spec)
    try:
        if match:
            start, stop, step = (float(g) for g in match.groups())
            if step == 0 or not all(map(math.isfinite, (start, stop, step))):
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count < 1:
                raise ValueError
            values = [start + i * step for i in range(count)]
        else:
            values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(
            f"values: expected 'start:stop:step' with a non-zero step towards stop, or a comma "
            f"list of numbers, got {spec!r}"
        ) from None
    if not values or not all(map(math.isfinite, values)):
        raise ValueError(f"values: expected finite numbers, got {spec!r}")
    return values


def _check_magnitudes(magnitudes: Sequence[float] | torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(magnitudes, dtype=torch.float64).flatten()
    if values.numel() == 0 or not bool(torch.isfinite(values).all()):
        raise ValueError(f"{_OP}: magnitudes must be a non-empty list of finite numbers")
    return values


# --------------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class ScreenedTransform:
    """One screenable P2 transformation: which parameter of ``invfast.core.transforms`` varies."""

    name: str  # the screening name, e.g. "translate-x"
    transform: str  # the ``invfast.core.transforms`` name, e.g. "translate"
    parameter: str  # the varied parameter, e.g. "dx"
    identity: float  # the magnitude that leaves images unchanged
    default_values: str  # default magnitudes, "start:stop:step"
    unit: str
    fixed: tuple[tuple[str, float], ...] = ()  # the other parameters, held at the identity


SCREENED_TRANSFORMS = {
    t.name: t
    for t in (
        ScreenedTransform("translate-x", "translate", "dx", 0.0, "0:16:1", "px right",
                          (("dy", 0.0),)),
        ScreenedTransform("translate-y", "translate", "dy", 0.0, "0:16:1", "px down",
                          (("dx", 0.0),)),
        ScreenedTransform("rotate", "rotate", "angle", 0.0, "0:180:10", "degrees anticlockwise"),
        ScreenedTransform("scale-x", "scale", "sx", 1.0, "1:0.25:-0.05", "factor",
                          (("sy", 1.0),)),
        ScreenedTransform("scale-y", "scale", "sy", 1.0, "1:0.25:-0.05", "factor",
                          (("sx", 1.0),)),
        ScreenedTransform("zoom", "zoom", "factor", 1.0, "1:0.25:-0.05", "factor"),
        ScreenedTransform("brightness", "brightness", "delta", 0.0, "0:250:10", "pixel units"),
        ScreenedTransform("contrast", "contrast", "factor", 1.0, "1:0:-0.05", "factor"),
        ScreenedTransform("grayscale-blend", "grayscale-blend", "alpha", 0.0, "0:1:0.1",
                          "blend weight"),
        ScreenedTransform("blur", "blur", "sigma", 0.0, "0:5:0.25", "px"),
        ScreenedTransform("noise", "noise", "sigma", 0.0, "0:150:10", "pixel units"),
    )
}  # fmt: skip


def screened_transform(name: str) -> ScreenedTransform:
    """The screening entry of ``name``; ValueError listing the valid names otherwise."""
    found = SCREENED_TRANSFORMS.get(name.replace("_", "-") if isinstance(name, str) else name)
    if found is None:
        raise ValueError(
            f"transform: unknown screening transformation {name!r}; valid: "
            f"{', '.join(SCREENED_TRANSFORMS)}"
        )
    return found


def transform_functions(
    name: str,
    magnitudes: Sequence[float],
    *,
    standardize: str | tuple = "per-image",
    seed: int = 0,
) -> tuple[TransformFn, StandardizeFn]:
    """``(transform_fn, standardize_fn)`` for :func:`screen` from ``invfast.core.transforms``.

    ``transform_fn(x, magnitudes [R], ids)`` is ONE fused launch with the per-row magnitude
    as the [R] parameter tensor; ``standardize`` is the classifier's input standardization
    (``invfast.core.checkpoint.standardization(ckpt)``), ``seed`` that of random transforms (noise).
    The magnitudes are checked against the parameter's range here, before any work."""
    spec = screened_transform(name)
    values = _check_magnitudes(magnitudes).float()
    fixed = dict(spec.fixed)
    transforms.get(spec.transform, **fixed, **{spec.parameter: values})  # range check
    identity = transforms.get("identity")

    def transform_fn(x: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        transform = transforms.get(spec.transform, **fixed, **{spec.parameter: rows})
        return transform(x, seed=seed, index=ids, standardize=standardize)

    def standardize_fn(x: torch.Tensor) -> torch.Tensor:
        return identity(x, standardize=standardize)

    return transform_fn, standardize_fn


# --------------------------------------------------------------------------- screening
class _Accumulator:
    """Streaming sums: correct counts per setting, per class counts and softmax sums."""

    def __init__(self, settings: int, classes: str | Sequence[int] | None):
        self.settings = settings
        self.classes_spec = classes
        self.num_classes = 0
        self.count = 0
        self.correct: torch.Tensor | None = None  # [S] int64
        self.tracked: list[int] = []
        self.row_of_class: torch.Tensor | None = None  # [K] int64, -1 when not tracked
        self.class_count: torch.Tensor | None = None  # [T] int64
        self.class_correct: torch.Tensor | None = None  # [T, S] int64
        self.class_prob: torch.Tensor | None = None  # [T, S, K] float64

    def start(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        if self.classes_spec is None:
            self.tracked = []
        elif isinstance(self.classes_spec, str):
            if self.classes_spec != "all":
                raise ValueError(f"{_OP}: classes must be 'all', a list of labels or None")
            self.tracked = list(range(num_classes))
        else:
            self.tracked = sorted({int(c) for c in self.classes_spec})
            bad = [c for c in self.tracked if not 0 <= c < num_classes]
            if bad:
                raise ValueError(
                    f"{_OP}: classes {bad} out of range for a model with {num_classes} classes"
                )
        t, s, k = len(self.tracked), self.settings, num_classes
        self.correct = torch.zeros(s, dtype=torch.int64, device=device)
        self.row_of_class = torch.full((k,), -1, dtype=torch.int64, device=device)
        if t:
            self.row_of_class[torch.tensor(self.tracked, device=device)] = torch.arange(
                t, device=device
            )
        self.class_count = torch.zeros(t, dtype=torch.int64, device=device)
        self.class_correct = torch.zeros(t * s, dtype=torch.int64, device=device)
        self.class_prob = torch.zeros(t * s, k, dtype=torch.float64, device=device)

    def add_images(self, labels: torch.Tensor) -> None:
        self.count += labels.numel()
        rows = self.row_of_class[labels]
        rows = rows[rows >= 0]
        self.class_count += torch.bincount(rows, minlength=self.class_count.numel())

    def add_rows(self, logits: torch.Tensor, labels: torch.Tensor, settings: torch.Tensor) -> None:
        correct = (logits.argmax(dim=1) == labels).long()
        self.correct.index_add_(0, settings, correct)
        rows = self.row_of_class[labels]
        keep = rows >= 0
        if bool(keep.any()):
            flat = rows[keep] * self.settings + settings[keep]
            self.class_correct.index_add_(0, flat, correct[keep])
            probs = torch.softmax(logits[keep].float(), dim=1).double()
            self.class_prob.index_add_(0, flat, probs)


def screen(
    classifier: nn.Module,
    data: Iterable,
    transform_fn: TransformFn,
    magnitudes: Sequence[float] | torch.Tensor,
    *,
    standardize_fn: StandardizeFn,
    fraction: float = 0.5,
    classes: str | Sequence[int] | None = "all",
    class_names: Sequence[str] | None = None,
    max_batch: int = 512,
    device: torch.device | str | None = None,
    transform: str = "",
    parameter: str = "magnitude",
) -> ScreeningResult:
    """Screen ``classifier`` over ``magnitudes`` of one transformation (P2 §3.3; module doc).

    ``data`` yields ``(images [B, C, H, W] uint8, labels [B], ids [B])`` (ids optional).
    ``transform_fn(x, magnitudes [R] float32, ids [R])`` returns the transformed,
    standardized float32 batch [R, C', H', W'] the classifier takes; ``standardize_fn(x)``
    does the same for clean images. ``classes`` is ``"all"``, a list of labels, or ``None``
    (no per-class curves). ``max_batch`` bounds the rows of one forward (clean and
    transformed copies together). The classifier runs in eval mode, without gradients, and
    its mode is restored afterwards.
    """
    values = _check_magnitudes(magnitudes)
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"{_OP}: fraction must be in (0, 1], got {fraction}")
    if int(max_batch) < 1:
        raise ValueError(f"{_OP}: max_batch must be a positive integer, got {max_batch}")
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"{_OP}: classifier must be a torch.nn.Module")
    device = torch.device(device) if device is not None else model_device(classifier)
    settings = values.numel() + 1  # setting 0 is the clean image, setting j + 1 is m_j
    acc = _Accumulator(settings, classes)
    magnitude_of_setting = torch.cat([values.new_zeros(1), values]).float().to(device)

    was_training = classifier.training
    classifier.eval()
    try:
        with torch.inference_mode():
            for batch in data:
                images, labels, ids = unpack_batch(batch, acc.count)
                images, labels, ids = images.to(device), labels.to(device), ids.to(device)
                _screen_batch(
                    classifier,
                    images,
                    labels,
                    ids,
                    transform_fn,
                    standardize_fn,
                    magnitude_of_setting,
                    acc,
                    int(max_batch),
                )
    finally:
        classifier.train(was_training)
    if acc.count == 0:
        raise ValueError(f"{_OP}: data yielded no images")
    return _result(acc, values.tolist(), float(fraction), class_names, transform, parameter)


def _screen_batch(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    ids: torch.Tensor,
    transform_fn: TransformFn,
    standardize_fn: StandardizeFn,
    magnitude_of_setting: torch.Tensor,
    acc: _Accumulator,
    max_batch: int,
) -> None:
    b = images.shape[0]
    if b == 0:
        return
    settings = magnitude_of_setting.numel()
    total = settings * b
    # Whole settings per chunk when a batch fits, so a chunk never splits one magnitude.
    chunk = (max_batch // b) * b if b <= max_batch else max_batch
    for start in range(0, total, chunk):
        rows = torch.arange(start, min(start + chunk, total), device=images.device)
        setting, image = rows // b, rows % b
        clean = setting == 0
        parts = []
        if bool(clean.any()):
            parts.append(standardize_fn(images[image[clean]]))
        if not bool(clean.all()):
            moved = ~clean
            parts.append(
                transform_fn(
                    images[image[moved]], magnitude_of_setting[setting[moved]], ids[image[moved]]
                )
            )
        inputs = parts[0] if len(parts) == 1 else torch.cat(parts)
        if not isinstance(inputs, torch.Tensor) or inputs.shape[0] != rows.numel():
            raise ValueError(
                f"{_OP}: transform_fn/standardize_fn must return one image per input row"
            )
        logits = classifier(inputs)
        if logits.dim() != 2 or logits.shape[0] != rows.numel():
            raise ValueError(
                f"{_OP}: classifier must return logits [rows, classes], got {tuple(logits.shape)}"
            )
        if acc.correct is None:
            acc.start(logits.shape[1], images.device)
        if int(labels.min()) < 0 or int(labels.max()) >= acc.num_classes:
            raise ValueError(
                f"{_OP}: labels must lie in [0, {acc.num_classes}) for this classifier"
            )
        if start == 0:
            acc.add_images(labels)
        acc.add_rows(logits, labels[image], setting)


def _result(
    acc: _Accumulator,
    magnitudes: list[float],
    fraction: float,
    class_names: Sequence[str] | None,
    transform: str,
    parameter: str,
) -> ScreeningResult:
    settings = acc.settings
    correct = acc.correct.cpu().tolist()
    accuracy = [c / acc.count for c in correct]
    class_count = acc.class_count.cpu().tolist()
    class_correct = acc.class_correct.cpu().view(-1, settings).tolist()
    class_prob = acc.class_prob.cpu().view(-1, settings, acc.num_classes)
    classes = []
    for row, label in enumerate(acc.tracked):
        n = class_count[row]
        if n == 0:
            if isinstance(acc.classes_spec, str):
                continue  # "all": classes absent from the data are left out
            raise ValueError(f"{_OP}: class {label} has no image in the data")
        class_accuracy = [c / n for c in class_correct[row]]
        mean_prob = class_prob[row] / n  # [S, K]
        moved = mean_prob[1:]
        peak = moved.max(dim=0).values
        # A stable sort on −peak keeps the lower class index first among ties.
        order = torch.argsort(-peak, stable=True).tolist()
        top = order[:TOP_CLASSES]
        rest = order[TOP_CLASSES:]
        classes.append(
            ClassScreening(
                label=label,
                name=None if class_names is None else str(class_names[label]),
                count=n,
                clean_accuracy=class_accuracy[0],
                accuracy=class_accuracy[1:],
                critical_magnitude=critical_magnitude(
                    magnitudes, class_accuracy[1:], class_accuracy[0], fraction
                ),
                top_classes=top,
                top_softmax=[moved[:, q].tolist() for q in top],
                others_softmax=moved[:, rest].max(dim=1).values.tolist() if rest else None,
                clean_top_softmax=[float(mean_prob[0, q]) for q in top],
            )
        )
    return ScreeningResult(
        transform=transform,
        parameter=parameter,
        magnitudes=[float(m) for m in magnitudes],
        fraction=fraction,
        count=acc.count,
        num_classes=acc.num_classes,
        clean_accuracy=accuracy[0],
        accuracy=accuracy[1:],
        critical_magnitude=critical_magnitude(magnitudes, accuracy[1:], accuracy[0], fraction),
        classes=classes,
    )
