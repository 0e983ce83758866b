"""Evaluate a checkpoint on a split: ``python -m training.evaluate --checkpoint runs/x/best.pt --data DIR``.

Multi-view testing (``--clips`` along time x ``--crops`` in space, TSN/TSM's protocol) averages the views' softmax
scores per video. Writes ``eval.json`` (settings, top-1/top-5, pair and within-pair accuracy, per-class accuracy, the
confusion matrix and each reversal pair's 2x2 confusion) and ``confusion.png`` into ``--out``, by default
``eval-<checkpoint stem>-<dataset>-<split stem>-<clips>x<crops>/`` next to the checkpoint (``<dataset>``: the dataset
directory's name and a hash of its absolute path), so that evaluations of other checkpoints in the same directory or on
other datasets, splits or views never replace each other; an ``--out`` that holds the evaluation of another
checkpoint, dataset, split or views is refused.

``--shuffle-frames`` feeds each clip's frames in a random order (seeded): the order-blind check. A model that reads
the frame order drops to within-pair chance (~0.5 on a benchmark of time-reversal pairs); one that does not, does not.

Model files (``.pt`` checkpoints, ``.pt2`` programs + sidecar JSON) load through
:func:`training.checkpoint.load_checkpoint_model`.

The sampler and preprocessing of the data side always come from the file's ``sampler`` / ``preprocess`` entries, never
from ``config["frames"]``: big-little models are configured with T but take 2T input frames.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdk.errors import ConfigError, SdkError
from sdk.preprocess import CROP_COUNTS
from training.checkpoint import CheckpointMeta, load_checkpoint_model
from training.cli import set_verbose, tool_parser
from training.data.check import check_dataset
from training.data.datasets import ClipDataset, DatasetInfo, make_loader
from training.metrics import classification_metrics, confusion_matrix, pair_confusion, per_class_accuracy
from training.plots import plot_confusion
from training.progress import progress

__all__ = ["default_out", "evaluate_checkpoint", "evaluation_report", "format_summary", "main", "predict",
           "shuffle_frames"]

def _set_eval(model: nn.Module) -> None:
    """Eval mode (dropout off, BatchNorm running statistics); an exported graph cannot ``.eval()``, so its
    training-mode ops are rewritten instead (a no-op for a program exported in eval mode)."""
    if isinstance(model, torch.fx.GraphModule):
        from torchao.quantization.pt2e import move_exported_model_to_eval

        move_exported_model_to_eval(model)
    else:
        model.eval()


def shuffle_frames(clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(N, T, ...)`` clips with each clip's T frames in its own random order."""
    order = torch.rand(clips.shape[:2], generator=generator).argsort(1).to(clips.device)
    return clips[torch.arange(clips.shape[0], device=clips.device)[:, None], order]


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device, *, desc: str = "eval",
            shuffle_seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video scores ``(N, C)`` float32 (softmax averaged over the views) and labels ``(N,)``.

    Batches are ``(N, T, C, H, W)`` or multi-view ``(N, V, T, C, H, W)``; the views run as one batch of ``N * V``
    clips. Averaging probabilities rather than logits keeps one over-confident view from outvoting the others.
    ``model`` must already be on ``device``. ``shuffle_seed``: each view's frames in a random order
    (:func:`shuffle_frames`), seeded by it.
    """
    _set_eval(model)
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    all_scores, all_labels = [], []
    for clips, labels in progress(loader, desc=desc, unit="batch", leave=False):
        clips = clips.to(device, non_blocking=True)
        views = clips.shape[1] if clips.ndim == 6 else 1
        clips = clips.flatten(0, 1) if clips.ndim == 6 else clips
        if generator is not None:
            clips = shuffle_frames(clips, generator)
        scores = model(clips).float().softmax(-1)
        all_scores.append(scores.unflatten(0, (-1, views)).mean(1).cpu())
        all_labels.append(labels)
    return torch.cat(all_scores), torch.cat(all_labels)


def evaluation_report(scores: torch.Tensor, labels: torch.Tensor, label_names: Sequence[str],
                      pairs: Sequence[tuple[int, int]] = ()) -> dict[str, Any]:
    """JSON-ready report: :func:`classification_metrics` keys, ``per_class_accuracy`` (name -> accuracy, None for a
    class without clips), ``confusion`` (rows = true class) and ``pair_confusion`` (each pair's 2x2 block, named)."""
    num_classes = len(label_names)
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise ConfigError(f"scores shaped {tuple(scores.shape)} do not match the {num_classes} labels")
    conf = confusion_matrix(scores.argmax(1), labels, num_classes)
    accuracy = per_class_accuracy(conf)
    pair_blocks = [{**p, "names": [label_names[i] for i in p["pair"]]} for p in pair_confusion(conf, pairs)]
    return {
        **classification_metrics(scores, labels, pairs),  # scores rank like log-scores: same top-k and pair order
        "labels": list(label_names),
        "per_class_accuracy": {name: None if np.isnan(a) else float(a) for name, a in zip(label_names, accuracy)},
        "confusion": conf.tolist(),
        "pair_confusion": pair_blocks,
    }


def _pick_device(name: str) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)


def _check_views(clips: int, crops: int) -> None:
    if not isinstance(clips, int) or clips < 1:
        raise ConfigError(f"clips must be a positive integer, got {clips!r}")
    if crops not in CROP_COUNTS:
        raise ConfigError(f"crops must be one of {', '.join(map(str, CROP_COUNTS))}, got {crops!r}")


def _dataset(info: DatasetInfo, split: str, meta: CheckpointMeta, clips: int, crops: int) -> ClipDataset:
    if list(meta.labels) != info.labels:
        raise ConfigError(f"the checkpoint's {len(meta.labels)} labels differ from the {len(info.labels)} labels of "
                          f"{info.root}: scores would be compared with the wrong classes")
    template = meta.config.get("frame_template", "img_{:05d}.jpg")
    return ClipDataset(info.records(split), sampler=meta.sampler, preprocess=meta.preprocess,
                       train=False, num_clips=clips,
                       num_crops=crops, template=template)


def default_out(checkpoint: str | Path, data: str | Path, split: str, clips: int, crops: int,
                shuffled: bool = False) -> Path:
    """``eval-<checkpoint stem>-<dataset name>-<6 hex of its absolute path>-<split stem>-<clips>x<crops>`` (and
    ``-shuffled``) next to ``checkpoint``: one directory per checkpoint, dataset, split, views and frame order, so that
    no evaluation replaces another's."""
    checkpoint, root = Path(checkpoint), Path(data).absolute()
    where = hashlib.sha256(str(root).encode()).hexdigest()[:6]
    suffix = "-shuffled" if shuffled else ""
    return checkpoint.parent / f"eval-{checkpoint.stem}-{root.name}-{where}-{Path(split).stem}-{clips}x{crops}{suffix}"


_SAME_EVALUATION = ("checkpoint", "data", "split", "clips", "crops", "shuffle_frames")
_ABSENT_SETTING = {"shuffle_frames": False}  # what an eval.json written before the setting existed held


def _check_out(out: Path, settings: dict[str, Any]) -> None:
    """Refuse an ``out`` whose ``eval.json`` is another evaluation's (an equal one is simply redone)."""
    previous = out / "eval.json"
    if not previous.is_file():
        return
    try:
        held = json.loads(previous.read_text())
    except ValueError:
        held = {}
    def same(key: str) -> bool:
        if key in ("checkpoint", "data"):  # paths as given: compare where they point
            return isinstance(held.get(key), str) and Path(held[key]).absolute() == Path(settings[key]).absolute()
        return held.get(key, _ABSENT_SETTING.get(key)) == settings[key]

    differ = [k for k in _SAME_EVALUATION if not same(k)]
    if differ:
        raise ConfigError(f"{previous} holds another evaluation ({', '.join(f'{k} {held.get(k)!r}' for k in differ)}); "
                          "choose another --out, or leave --out out for a directory of its own")


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, *, split: str = "val.csv", clips: int = 1,
                        crops: int = 1, batch_size: int = 8, workers: int = 2, device: str = "auto",
                        out: str | Path | None = None, cache: bool = True,
                        cache_dir: str | Path | None = None, shuffle: bool = False) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data/split`` with ``clips`` x ``crops`` views; write ``eval.json`` and
    ``confusion.png`` into ``out`` (default: :func:`default_out`; an ``out`` holding another evaluation is a
    :class:`ConfigError`, checked before any work).

    A ``.pt`` trained on a feature cache (``freeze`` > 0) is evaluated on the fp32 feature cache of the split (built
    on first use, under ``cache_dir``: default the checkpoint's ``cache_dir``, else
    :func:`~training.data.feature_cache.default_cache_dir`) when ``cache`` and one crop: the same numbers as on decoded
    frames, without re-running the frozen blocks per model. The split is checked first
    (:func:`~training.data.check.check_dataset` without decoding). Returns what ``eval.json`` holds: the settings
    (checkpoint, data, split, clips, crops, shuffle_frames, device, seconds, out, cached) and the
    :func:`evaluation_report`. ``shuffle``: every clip's frames in a random order, seeded (the order-blind check).
    """
    _check_views(clips, crops)
    checkpoint = Path(checkpoint)
    info = DatasetInfo.from_dir(data)
    check_dataset(info, [split], decode=False).raise_for_problems()
    out = Path(out) if out is not None else default_out(checkpoint, info.root, split, clips, crops, shuffle)
    settings = {"checkpoint": str(checkpoint), "data": str(info.root), "split": split, "clips": clips, "crops": crops,
                "shuffle_frames": shuffle}
    _check_out(out, settings)
    dev = _pick_device(device)
    model, meta = load_checkpoint_model(checkpoint, dev)
    dataset = _dataset(info, split, meta, clips, crops)
    freeze = int(meta.config.get("freeze", 0)) if checkpoint.suffix == ".pt" else 0
    cached = cache and crops == 1 and freeze > 0 and meta.config.get("feature_cache", True)
    if cached:
        from training.data.feature_cache import CachedClipDataset
        from training.frozen import FromBlock, cache_split

        feature_cache = cache_split(model, freeze, info, split, dataset.preprocess, train=False, hflip=False,
                                    cache_dir=cache_dir or meta.config.get("cache_dir", ""), device=dev,
                                    workers=workers,
                                    template=dataset.template)
        dataset = CachedClipDataset(feature_cache, sampler=dataset.sampler, train=False, num_clips=clips)
        model, workers = FromBlock(model, freeze), 0
    loader = make_loader(dataset, batch_size=batch_size, workers=workers, shuffle=False, pin_memory=dev.type == "cuda")
    start = time.perf_counter()
    scores, labels = predict(model, loader, dev, desc=f"eval {clips}x{crops}", shuffle_seed=0 if shuffle else None)
    out.mkdir(parents=True, exist_ok=True)
    result = {**settings, "device": str(dev), "seconds": round(time.perf_counter() - start, 2), "out": str(out), "cached": cached,
              **evaluation_report(scores, labels, info.labels, info.pairs)}
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    plot_confusion(np.asarray(result["confusion"]), info.labels, out / "confusion.png", info.pairs)
    return result


def format_summary(result: dict[str, Any], worst: int = 3) -> str:
    """A short table: the headline accuracies, then the ``worst`` classes by accuracy."""
    rows = [("top-1", "top1"), ("top-5", "top5"), ("pair", "pair_acc"), ("within-pair", "within_pair_acc")]
    lines = [f"{Path(result['checkpoint']).name} on {result['split']}: {result['n']} videos, "
             f"{result['clips']} clips x {result['crops']} crops"
             + (", frames shuffled" if result.get("shuffle_frames") else "")]
    lines += [f"  {name:<12} {result[key]:.3f}" for name, key in rows if key in result]
    known = sorted((acc, name) for name, acc in result["per_class_accuracy"].items() if acc is not None)
    lines.append("  worst: " + ", ".join(f"{name} {acc:.3f}" for acc, name in known[:worst]))
    lines.append(f"  -> {Path(result['out']) / 'eval.json'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser("python -m training.evaluate", __doc__.splitlines()[0],
                         "python -m training.evaluate --checkpoint runs/demo/student/best.pt --data data/other "
                         "--clips 2 --crops 3")
    parser.add_argument("--checkpoint", required=True, help=".pt checkpoint or .pt2 exported program (+ NAME.json)")
    parser.add_argument("--data", required=True, help="dataset directory (split files beside labels.txt, or split "
                        "folders of class folders)")
    parser.add_argument("--split", default="val.csv", help="split inside --data: a .csv, a frame list or a folder of "
                        "class folders (a missing val.csv means the folder val/)")
    parser.add_argument("--clips", type=int, default=1, help="views along time per video")
    parser.add_argument("--crops", type=int, default=1, choices=CROP_COUNTS, help="views in space per clip")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch (each with clips x crops views)")
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader worker processes, at most one per usable core and none on a single core")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--cache-dir", default=None, help="feature cache directory for checkpoints trained on one "
                        "(default: the checkpoint's cache_dir, else $EDGEVIDEO_FEATURE_CACHE or "
                        "~/.cache/edgevideo/features)")
    parser.add_argument("--out", default=None, help="output directory (default: eval-<checkpoint>-<dataset>-<split>-"
                        "<clips>x<crops> next to the checkpoint: one per checkpoint, dataset, split and views)")
    parser.add_argument("--shuffle-frames", action="store_true", help="each clip's frames in a random order (seeded): "
                        "the order-blind check, a model that reads the frame order drops to within-pair chance")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    try:
        result = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, clips=args.clips, crops=args.crops,
                                     batch_size=args.batch_size, workers=args.workers, device=args.device, out=args.out,
                                     cache_dir=args.cache_dir, shuffle=args.shuffle_frames)
    except SdkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
