"""Profile registry models: ``python -m training.profile --arch NAME --frames T --size S [--compare A B ...]``.

Per model: parameters, MACs per clip (``torch.utils.flop_counter``; MACs = FLOPs / 2), peak memory of one training
step (forward + backward, batch 1) and inference latency. With several models the latencies are measured interleaved
in one run and printed as ratios to the first model (the machines are shared and noisy: only ratios compare).

Peak memory is counted, not sampled: every tensor storage created during the step is tracked until it is freed
(a ``TorchDispatchMode``), plus the parameters -- the same figure on CPU and GPU, independent of the allocator.
"""
from __future__ import annotations

import math
import statistics
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from training.cli import set_verbose, tool_parser
from training.macs import count_gmacs
from training.models import create, list_models


class PeakMemory(TorchDispatchMode):
    """Peak bytes of tensor storages alive at once among those created inside the context."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.live:
            return
        self.live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


@dataclass
class Profile:
    arch: str
    input_frames: int
    size: int
    params_m: float
    gmacs: float
    train_peak_mb: float
    latency_ms: float = float("nan")


def example_clip(model: nn.Module, frames: int, size: int, batch: int = 1) -> torch.Tensor:
    """``(batch, input_frames, 3, size, size)``; big-little models take ``input_frames`` = 2 x ``frames``."""
    return torch.randn(batch, getattr(model, "input_frames", frames), 3, size, size)


def measure(arch: str, frames: int, size: int, num_classes: int = 400) -> tuple[Profile, nn.Module, torch.Tensor]:
    model = create(arch, num_classes=num_classes, frames=frames, pretrained=False)
    clip = example_clip(model, frames, size)
    gmacs = count_gmacs(model, clip)
    model.train()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with PeakMemory() as mem:
        model(clip).sum().backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    profile = Profile(arch, clip.shape[1], size, sum(p.numel() for p in model.parameters()) / 1e6,
                      gmacs, (param_bytes + mem.peak) / 2**20)
    return profile, model, clip


@torch.no_grad()
def interleaved_latency(models: Sequence[nn.Module], clips: Sequence[torch.Tensor], repeats: int) -> list[float]:
    """Median eval latency (ms) per model, measured round-robin so that machine noise hits all of them alike."""
    for m, x in zip(models, clips, strict=True):
        m(x)  # warm-up
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for i, (m, x) in enumerate(zip(models, clips, strict=True)):
            t0 = time.perf_counter()
            m(x)
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def main(argv: Sequence[str] | None = None) -> int:
    p = tool_parser("python -m training.profile", __doc__.splitlines()[0],
                    "python -m training.profile --compare tsn_mobilenet_v2 tam_mobilenet_v2 --frames 8 --size 112",
                    notes="models (ARCH): " + ", ".join(list_models()))
    p.add_argument("--arch", metavar="ARCH[:T]", help="one model from the registry, optionally with its own T")
    p.add_argument("--compare", nargs="+", metavar="ARCH[:T]",
                   help="several models, ratios to the first; ARCH:T overrides --frames for that model "
                        "(e.g. tsn_resnet50:16 blvnet_tam_r50:8 compares the same 16 input frames)")
    p.add_argument("--frames", type=int, default=8, help="T (big-little models take 2T input frames)")
    p.add_argument("--size", type=int, default=224, help="square input side in pixels")
    p.add_argument("--repeats", type=int, default=5, help="latency runs per model")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    args = p.parse_args(argv)
    set_verbose(args.verbose)
    archs = args.compare or ([args.arch] if args.arch else None)
    if not archs:
        p.error("give --arch NAME or --compare A B ...")
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = []
    for item in archs:
        name, _, t = item.partition(":")
        if name not in list_models() or (t and not t.isdigit()):
            p.error(f"{item!r}: expected ARCH[:T] with ARCH one of {', '.join(list_models())}")
        specs.append((name, int(t) if t else args.frames))

    results = [measure(name, t, args.size) for name, t in specs]
    profiles = [r[0] for r in results]
    if not args.no_latency:
        for prof, ms in zip(profiles, interleaved_latency([r[1] for r in results], [r[2] for r in results],
                                                          args.repeats), strict=True):
            prof.latency_ms = ms
    print(f"batch 1, {args.size}x{args.size}, torch threads {torch.get_num_threads()}, "
          f"latency: median of {args.repeats} interleaved eval runs")
    head = f"{'arch':<26} {'frames':>6} {'params M':>9} {'GMACs':>8} {'train peak MB':>14} {'latency ms':>11}"
    print(head)
    for prof in profiles:
        latency = "-" if math.isnan(prof.latency_ms) else f"{prof.latency_ms:.1f}"
        print(f"{prof.arch:<26} {prof.input_frames:>6} {prof.params_m:>9.2f} {prof.gmacs:>8.2f} "
              f"{prof.train_peak_mb:>14.0f} {latency:>11}")
    if len(profiles) > 1:
        base = asdict(profiles[0])
        print(f"\nratios to {profiles[0].arch}:")
        for prof in profiles[1:]:
            row = asdict(prof)
            keys = ("params_m", "gmacs", "train_peak_mb") + (() if args.no_latency else ("latency_ms",))
            print(f"{prof.arch:<26} " + "  ".join(f"{k} {row[k] / base[k]:.2f}x" for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
