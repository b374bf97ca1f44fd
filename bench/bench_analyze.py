"""End-to-end ``invfast analyze`` cost (issue 6): resnet18 at 64 px, synthetic images, every
ReLU layer, unit neurons, CPU.

Three timings over the same prepared batches (x, T(x), groups), side by side in one run:
- ``forward x2``: two forward-only passes over x and T(x), no hooks — the unavoidable work;
- ``analysis (fused)``: both passes of ``InvarianceAccumulator`` through forward hooks with
  the fused CPU kernels, every layer at once;
- ``analysis (reference)``: the same through the pure-PyTorch twins (``backend="reference"``);
- ``analysis (fused, activations kept)``: the fused analysis with pass 1's activations kept
  for pass 2 (``cache_budget``), so pass 2 runs no forward pass.
Plus ``analyze()`` end to end (data generation, transforms, summaries included).

    python bench/bench_analyze.py --images 2048        # the issue's setting; prints a table
    pytest bench/bench_analyze.py --benchmark-only      # small pytest-benchmark variant
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from invfast.core import checkpoint, data, models, transforms
from invfast.neurons.invariance import InvarianceAccumulator

IMAGE_SIZE = 64
CLASSES = 16


def prepare(images: int, batch_size: int):
    per_class = -(-images // CLASSES)
    dataset = data.load("synthetic", image_size=IMAGE_SIZE, synthetic_classes=CLASSES,
                        synthetic_per_class=per_class + 2, test_fraction=0.01)  # fmt: skip
    pool = dataset.train
    index = torch.arange(min(images, len(pool)))
    imgs, labels, ids = pool.images[index], pool.labels[index], pool.ids[index]
    blur, identity = transforms.get("blur", sigma=2.0), transforms.get("identity")
    batches = []
    for start in range(0, len(index), batch_size):
        sl = slice(start, start + batch_size)
        x = identity(imgs[sl], index=ids[sl])
        tx = blur(imgs[sl], seed=0, index=ids[sl])
        batches.append((x, tx, (labels[sl] % 2).to(torch.int64)))
    torch.manual_seed(0)
    model = models.build("resnet18", CLASSES, 3, IMAGE_SIZE).eval()
    return model, batches, dataset


def forward_twice(model, batches) -> None:
    with torch.inference_mode():
        for _ in range(2):
            for x, tx, _ in batches:
                model(x)
                model(tx)


def analysis(model, batches, backend: str, cache_budget: int = 0) -> None:
    acc = InvarianceAccumulator(model, model.analysis_layers(), groups=2, backend=backend)
    acc.run(batches, cache_budget=cache_budget)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def end_to_end(model, images: int, batch_size: int) -> float:
    from invfast.neurons import analysis

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.pt"
        per_class = -(-images // CLASSES)
        checkpoint.save(path, arch="resnet18", state_dict=model.state_dict(),
                        num_classes=CLASSES, in_channels=3, image_size=IMAGE_SIZE,
                        data={"spec": "synthetic", "options": {
                            "image_size": IMAGE_SIZE, "synthetic_classes": CLASSES,
                            "synthetic_per_class": per_class * 5, "test_fraction": 0.2}},
                        transform={"name": "blur", "params": {"sigma": 2.0}},
                        seen_transformed=list(range(8)))  # fmt: skip
        config = analysis.AnalysisConfig(checkpoint=str(path), tau=0.1, batch_size=batch_size)
        return timed(analysis.analyze, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-end-to-end", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="best of N (interleaved)")
    parser.add_argument(
        "--activation-budget-mb",
        type=int,
        default=8192,
        help="cache budget of the 'activations kept' row (default 8192)",
    )
    args = parser.parse_args()
    model, batches, _ = prepare(args.images, args.batch_size)
    n = sum(len(b[0]) for b in batches)
    analysis(model, batches[:1], "cpu")  # warm-up (thread pools, allocations)
    budget = args.activation_budget_mb << 20
    base, fused, kept = float("inf"), float("inf"), float("inf")
    for _ in range(args.repeat):  # interleaved: load changes on a shared machine hit all
        base = min(base, timed(forward_twice, model, batches))
        fused = min(fused, timed(analysis, model, batches, "cpu"))
        kept = min(kept, timed(analysis, model, batches, "cpu", budget))
    rows = [("forward x2 (x and T(x), 2 passes)", base), ("analysis, fused CPU kernels", fused),
            ("analysis, fused, pass-1 activations kept for pass 2", kept)]  # fmt: skip
    if not args.no_reference:
        rows.append(("analysis, pure PyTorch (reference)", timed(analysis, model, batches,
                                                                 "reference")))  # fmt: skip
    if not args.no_end_to_end:
        rows.append(("analyze() end to end (data, transforms, summaries)",
                     end_to_end(model, n, args.batch_size)))  # fmt: skip
    print(f"resnet18 {IMAGE_SIZE}px, {n} images, {len(model.analysis_layers())} ReLU layers, "
          f"unit neurons, {torch.get_num_threads()} threads")  # fmt: skip
    print("| path | seconds | vs forward x2 |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")
    print(f"overhead of the fused analysis: {100 * (fused / base - 1):.1f} %")


# pytest-benchmark variant (small: 64 images)
def bench_analysis_fused(benchmark):
    model, batches, _ = prepare(64, 32)
    benchmark.pedantic(analysis, args=(model, batches, "cpu"), rounds=3)


def bench_analysis_fused_activations_kept(benchmark):
    model, batches, _ = prepare(64, 32)
    benchmark.pedantic(analysis, args=(model, batches, "cpu", 1 << 30), rounds=3)


def bench_forward_twice(benchmark):
    model, batches, _ = prepare(64, 32)
    benchmark.pedantic(forward_twice, args=(model, batches), rounds=3)


if __name__ == "__main__":
    main()
