"""Training the Invariant Transformer Net (P2 §3.4): the two-branch step and evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from invfast.core.data.batches import unpack_batch
from invfast.core.runtime.device import model_device
from invfast.screening.itn.model import (
    _OP,
    BRANCH_MAGNITUDE,
    InvariantTransformerNet,
    ITNConfig,
    StandardizeFn,
    choose_branch,
    extend,
    random_unit_vectors,
    recolor,
    transformer_loss,
    warp,
)


# --------------------------------------------------------------------------- training
class _Frozen:
    """Context: classifier in eval mode with no parameter gradients; restored on exit."""

    def __init__(self, classifier: nn.Module):
        self.classifier = classifier

    def __enter__(self) -> nn.Module:
        self.training = self.classifier.training
        self.flags = [(p, p.requires_grad) for p in self.classifier.parameters()]
        self.classifier.eval()
        for p, _ in self.flags:
            p.requires_grad_(False)
        return self.classifier

    def __exit__(self, *exc) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.classifier.train(self.training)


class ITNTrainer:
    """Trains an ``InvariantTransformerNet`` in front of a frozen ``classifier``."""

    def __init__(
        self,
        classifier: nn.Module,
        *,
        channels: int,
        standardize_fn: StandardizeFn,
        config: ITNConfig | None = None,
        device: torch.device | str | None = None,
    ):
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"{_OP}: classifier must be a torch.nn.Module")
        self.config = (config or ITNConfig()).validate()
        self.classifier = classifier
        self.standardize_fn = standardize_fn
        self.device = torch.device(device) if device is not None else model_device(classifier)
        self.generator = torch.Generator().manual_seed(int(self.config.seed))
        self.itn = InvariantTransformerNet(
            channels, hidden=self.config.hidden, init=self.config.init, generator=self.generator
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.itn.parameters(), lr=self.config.lr)
        self.history: list[dict] = []
        self.epoch = 0

    def _uniform(self, count: int) -> torch.Tensor:
        return torch.rand(count, generator=self.generator).to(self.device)

    def _vectors(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.config.unit_vectors
        v = random_unit_vectors(n, dim, self.generator).to(self.device)
        u = random_unit_vectors(n, dim, self.generator).to(self.device)
        return v, u

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """One optimisation step on one batch; returns the record added to ``history``."""
        cfg = self.config
        images, labels = images.to(self.device), labels.to(self.device).long()
        if images.dim() != 4 or images.shape[1] != self.itn.channels:
            raise ValueError(
                f"{_OP}: images must be [B, {self.itn.channels}, H, W], got {tuple(images.shape)}"
            )
        b = images.shape[0]
        c_s, c_c = self._uniform(b), self._uniform(b)
        v_s, u_s = self._vectors(3)
        v_c, u_c = self._vectors(self.itn.channels + 1)
        self.itn.train()
        with _Frozen(self.classifier) as classifier:
            theta, matrix = self.itn.spatial(c_s), self.itn.color(c_c)
            transformed = warp(recolor(images.float(), matrix), theta)
            logits = classifier(self.standardize_fn(transformed))
            correct = int((logits.argmax(dim=1) == labels).sum())
            accuracy = correct / b
            ce = F.cross_entropy(logits, labels)
            spatial = transformer_loss(extend(theta), c_s, v_s, u_s, cfg.diversity_weight)
            color = transformer_loss(extend(matrix), c_c, v_c, u_c, cfg.diversity_weight)
            branch = choose_branch(accuracy, cfg.target_accuracy)
            if branch == BRANCH_MAGNITUDE:
                loss = spatial["loss"] + cfg.color_weight * color["loss"]
            else:
                loss = ce
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        record = {
            "step": len(self.history),
            "epoch": self.epoch,
            "branch": branch,
            "batch_accuracy": accuracy,
            "loss": float(loss.detach()),
            "classification_loss": float(ce.detach()),
        }
        for name, terms in (("spatial", spatial), ("color", color)):
            for key, value in terms.items():
                record[f"{name}_{key}"] = float(value.detach())
        self.history.append(record)
        return record

    def fit(self, data: Iterable, epochs: int | None = None) -> list[dict]:
        """``epochs`` passes over ``data`` (re-iterable, yields (images, labels[, ids]))."""
        epochs = self.config.epochs if epochs is None else int(epochs)
        if epochs > 1 and iter(data) is data:
            raise ValueError(f"{_OP}: data must be re-iterable (a list or a DataLoader)")
        for _ in range(epochs):
            seen = 0
            for batch in data:
                images, labels, _ids = unpack_batch(batch, seen, _OP)
                seen += images.shape[0]
                if images.shape[0]:
                    self.step(images, labels)
            if seen == 0:
                raise ValueError(f"{_OP}: data yielded no images")
            self.epoch += 1
        return self.history

    def evaluate(
        self,
        data: Iterable,
        *,
        c_s: float | str | None = None,
        c_c: float | str | None = None,
        seed: int = 0,
    ) -> float:
        """Accuracy of the frozen classifier on transformed ``data``.

        Each control parameter is a float (the same c for every image), ``"random"`` (U[0, 1]
        per image, from a generator seeded with ``seed``) or ``None`` (transformer off)."""
        return self.evaluate_change(data, c_s=c_s, c_c=c_c, seed=seed)[0]

    @torch.no_grad()
    def evaluate_change(
        self,
        data: Iterable,
        *,
        c_s: float | str | None = None,
        c_c: float | str | None = None,
        seed: int = 0,
    ) -> tuple[float, float]:
        """(accuracy, mean |x̃ − x| over images and pixels in pixel units), see ``evaluate``."""
        generator = torch.Generator().manual_seed(int(seed))
        correct = count = 0
        change = 0.0
        self.itn.eval()
        with _Frozen(self.classifier) as classifier:
            for batch in data:
                images, labels, _ids = unpack_batch(batch, count, _OP)
                images, labels = images.to(self.device), labels.to(self.device)
                b = images.shape[0]
                controls = [
                    self._control(value, b, generator, name)
                    for value, name in ((c_s, "c_s"), (c_c, "c_c"))
                ]
                transformed = self.itn.transform(images, *controls)
                change += float((transformed - images.float()).abs().flatten(1).mean(1).sum())
                logits = classifier(self.standardize_fn(transformed))
                correct += int((logits.argmax(dim=1) == labels).sum())
                count += b
        if count == 0:
            raise ValueError(f"{_OP}: data yielded no images")
        return correct / count, change / count

    def _control(self, value, count: int, generator: torch.Generator, name: str):
        if value is None:
            return None
        if value == "random":
            return torch.rand(count, generator=generator).to(self.device)
        if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
            return torch.full((count,), float(value), device=self.device)
        raise ValueError(f"{_OP}: {name} must be a float in [0, 1], 'random' or None")

    @torch.no_grad()
    def matrices(self, c: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """θ(c) [n, 2, 3] and K(c) [n, C, C+1] on the CPU, for the given control values."""
        values = torch.as_tensor(list(c), dtype=torch.float32, device=self.device)
        self.itn.eval()
        return self.itn.spatial(values).cpu(), self.itn.color(values).cpu()
