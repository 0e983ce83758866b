"""``python -m benchmarks probe --data DIR``: does the benchmark measure temporal modelling? Linear probes say.

Frozen ImageNet MobileNetV2 features of T uniformly sampled frames per clip (the sdk sampler and preprocessing), then
two linear classifiers trained on the same features:

- ``average``: the mean over time (frame-order invariant, like TSN) -- must stay at within-pair chance (0.5);
- ``ordered``: the T features concatenated in time order -- can tell a clip from its reversal.

Both see exactly the same frames; only the order information differs, so the gap between them is what the benchmark
measures. Features are cached outside the dataset, in the feature cache directory
(``training.data.feature_cache.default_cache_dir()/probe``), keyed by the split's videos, frames and size.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.cli import set_verbose, tool_parser
from sdk.files import atomic_path
from training.data.datasets import ClipDataset, DatasetInfo, make_loader
from training.data.feature_cache import default_cache_dir
from training.metrics import classification_metrics
from training.models.mobilenet_v2 import MobileNetV2, load_imagenet_weights
from training.progress import progress


@torch.no_grad()
def extract(info: DatasetInfo, split: str, frames: int, size: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, T, 1280)`` frozen per-frame features and ``(N,)`` labels of a split, cached on disk."""
    records = info.records(f"{split}.csv")
    videos = [(str(Path(r.path).resolve()), r.label, Path(r.path).stat().st_mtime_ns) for r in records]
    key = hashlib.sha256(json.dumps(videos).encode()).hexdigest()[:16]
    cache = default_cache_dir() / "probe" / f"{split}-{key}-T{frames}-S{size}.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["features"], z["labels"]
    model = load_imagenet_weights(MobileNetV2()).eval()
    ds = ClipDataset(records, sampler=Sampler("uniform_segments", frames),
                     preprocess=Preprocess(size=size, resize=round(size * 8 / 7)), train=False)
    feats, ys = [], []
    for clips, y in progress(make_loader(ds, batch_size=16, workers=workers, shuffle=False), desc=f"features {split}"):
        n, t = clips.shape[:2]
        feats.append(model.forward_features(clips.flatten(0, 1)).unflatten(0, (n, t)).numpy())
        ys.append(y.numpy())
    out = np.concatenate(feats), np.concatenate(ys)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, features=out[0], labels=out[1])
    return out


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int, seed: int) -> nn.Linear:
    """Full-batch AdamW on standardised inputs (the probe, not a model to ship)."""
    torch.manual_seed(seed)
    probe = nn.Linear(x.shape[1], classes)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(x), y).backward()
        opt.step()
    return probe


def run_probes(data: str | Path, *, frames: int = 8, size: int = 112, steps: int = 500, workers: int = 2,
               seed: int = 0) -> dict[str, dict[str, float]]:
    """Metrics of the ``average`` and ``ordered`` probes on a benchmark's val split."""
    info = DatasetInfo.from_dir(data)
    (xtr, ytr), (xva, yva) = (extract(info, s, frames, size, workers) for s in ("train", "val"))
    views = {"average": lambda f: f.mean(1), "ordered": lambda f: f.reshape(len(f), -1)}
    results = {}
    for name, view in views.items():
        tr, va = torch.from_numpy(view(xtr)), torch.from_numpy(view(xva))
        mean, std = tr.mean(0), tr.std(0) + 1e-6
        probe = fit_linear((tr - mean) / std, torch.from_numpy(ytr).long(), len(info.labels), steps, seed)
        with torch.no_grad():
            results[name] = classification_metrics(probe((va - mean) / std), torch.from_numpy(yva).long(), info.pairs)
    return results


def main(argv: list[str]) -> int:
    p = tool_parser("python -m benchmarks probe", __doc__.splitlines()[0],
                    "python -m benchmarks probe --data data/small --frames 8 --size 112")
    p.add_argument("--data", required=True, help="a generated benchmark (python -m training.data.synthetic)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (uniform_segments)")
    p.add_argument("--size", type=int, default=112, help="square crop side in pixels")
    p.add_argument("--steps", type=int, default=500, help="full-batch optimisation steps per probe")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0, help="seed of the probes' initialisation")
    args = p.parse_args(argv)
    set_verbose(args.verbose)

    info = DatasetInfo.from_dir(args.data)
    start = time.perf_counter()
    results = run_probes(args.data, frames=args.frames, size=args.size, steps=args.steps, workers=args.workers,
                         seed=args.seed)
    n = results["average"]["n"]
    print(f"data {info.root} (seed {info.meta.get('seed')}, preset {info.meta.get('preset')}): {n} val clips, "
          f"T={args.frames} frames at {args.size}px, frozen ImageNet MobileNetV2, {time.perf_counter() - start:.0f}s")
    print(f"{'probe':<10} {'top-1':>7} {'pair':>7} {'within-pair':>12}")
    for name, m in results.items():
        print(f"{name:<10} {m['top1']:>7.3f} {m['pair_acc']:>7.3f} {m['within_pair_acc']:>12.3f}")
    print(f"chance: top-1 {1 / len(info.labels):.3f}, pair {1 / max(1, len(info.pairs)):.3f}, within-pair 0.500")
    return 0
