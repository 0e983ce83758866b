"""Parity at export: a program run in its real runtime against the torch reference, on golden and held-out inputs.

Clip programs are compared output by output on every clip. Stream programs run each clip frame by frame from zero
state in the runtime *and* in torch; every step's outputs are compared, and the clip's prediction is the mean of its
per-step logits (what the offline model computes, see ``ConsensusHead``). A FASTER aggregator program runs feature
sequences step by step the same way; its prediction is the last step's logits.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sdk.manifest import Parity
from training.config import option

__all__ = ["Outputs", "ParityError", "Tolerance", "measure", "run_clips"]

Run = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


class ParityError(RuntimeError):
    """An exported program disagrees with its torch reference beyond the tolerance: the export fails."""


@dataclass(frozen=True)
class Tolerance:
    """Largest max-abs-diff of the logits allowed per precision (None: not checked), and the smallest top-1
    agreement for int8 (quantization moves logits by more than any fixed bound on a trained model).

    The bound is ``atol + rtol * max|reference logits|``, like ``numpy.allclose``: float rounding differences grow
    with the size of the activations: a random bLVNet-R50 with logits up to 890 measured 1.2e-3 in fp32 (.pte and
    .tflite vs torch; 1.4e-6 of its largest logit), over the fixed 1e-3 that suits logits of +-5. ``rtol`` 1e-5 is
    ~100x float32's epsilon: room for a deep net's accumulated rounding, far below a real mismatch."""

    fp32: float = option(1e-3, help="max |logit diff| for fp32 programs", flag="--atol-fp32")
    fp16: float = option(5e-2, help="max |logit diff| for fp16 programs", flag="--atol-fp16")
    int8: float | None = option(None, help="max |logit diff| for int8 programs (default: none)", flag="--atol-int8")
    int8_min_top1: float = option(0.9, help="smallest top-1 agreement of an int8 program with its reference",
                                  flag="--int8-min-agreement")
    rtol: float = option(1e-5, help="added to each atol, times the largest |logit| of the reference (like "
                                    "numpy.allclose)")

    def atol(self, precision: str) -> float | None:
        return getattr(self, precision)

    def bound(self, precision: str, reference: np.ndarray) -> float | None:
        """The max-abs-diff allowed against ``reference`` logits (None: not checked)."""
        atol = self.atol(precision)
        return None if atol is None else atol + self.rtol * float(np.abs(reference).max(initial=0.0))

    def min_top1(self, precision: str) -> float | None:
        return self.int8_min_top1 if precision == "int8" else None


class Outputs(NamedTuple):
    """What a program returned on a list of inputs: per-call logits ``(C, S, K)``, the prediction of each input
    ``(C, K)``, and, for FASTER clip programs, the ``features`` output ``(C, S, ...)`` (else None)."""

    steps: np.ndarray
    clips: np.ndarray
    features: np.ndarray | None = None


def run_clips(run: Run, mode: str, inputs: Sequence[tuple[np.ndarray, ...]],
              zero_state: Sequence[np.ndarray] = ()) -> Outputs:
    """Run ``run`` on each input (see :class:`Outputs`).

    ``mode="clip"``: each input is ``(clip,)``, S = 1. ``mode="stream"``: each input is ``(frames (T, 1, 3, H, W),)``,
    stepped from ``zero_state`` (outputs ``logits, features, *state``); S = T and the prediction is the mean over
    steps. ``mode="aggregate"``: each input is ``(features (S, 1, ...),)``, stepped from ``zero_state`` (outputs
    ``logits, *state``); the prediction is the last step's logits (the video's, once every segment was seen).
    """
    steps_all, clip_all, features_all = [], [], []
    state_at = {"stream": 2, "aggregate": 1}.get(mode)
    for (x,) in inputs:
        if state_at is None:
            out = run([x])
            logits = out[0].reshape(1, -1)
            if len(out) > 1:
                features_all.append(out[1][None])
        else:
            state, rows = [np.array(s) for s in zero_state], []
            for item in x:
                out = run([item, *state])
                rows.append(out[0].reshape(-1))
                state = out[state_at:]
            logits = np.stack(rows)
        steps_all.append(logits)
        clip_all.append(logits[-1] if mode == "aggregate" else logits.mean(0))
    return Outputs(np.stack(steps_all), np.stack(clip_all), np.stack(features_all) if features_all else None)


def measure(program_steps: np.ndarray, program_clips: np.ndarray, ref_steps: np.ndarray, ref_clips: np.ndarray, *,
            precision: str, reference: str, tolerance: Tolerance, golden_diff: float,
            fp32_clips: np.ndarray | None = None, features_diff: float | None = None) -> Parity:
    """The :class:`Parity` of a program's outputs against the reference's; raises :class:`ParityError` beyond the
    tolerance. ``features_diff`` (FASTER clip programs) is held to the same bound as the logits."""
    diff = float(np.abs(program_steps - ref_steps).max())
    agree = float((program_clips.argmax(-1) == ref_clips.argmax(-1)).mean())
    vs = None
    if fp32_clips is not None:
        vs = {"max_abs_diff": float(np.abs(program_clips - fp32_clips).max()),
              "top1_agreement": float((program_clips.argmax(-1) == fp32_clips.argmax(-1)).mean())}
    atol, min_top1 = tolerance.bound(precision, ref_steps), tolerance.min_top1(precision)
    parity = Parity(status="verified", reference=reference, clips=len(program_clips), max_abs_diff=diff,
                    top1_agreement=agree, golden_max_abs_diff=golden_diff, tolerance=atol,
                    min_top1_agreement=min_top1, vs_fp32=vs, features_max_abs_diff=features_diff)
    problems = []
    if atol is not None and max(diff, golden_diff) > atol:
        problems.append(f"max-abs-diff {max(diff, golden_diff):.3g} > tolerance {atol:.3g} (atol "
                        f"{tolerance.atol(precision):g} + rtol {tolerance.rtol:g} x max|logit| "
                        f"{np.abs(ref_steps).max():.3g})")
    if atol is not None and features_diff is not None and features_diff > atol:
        problems.append(f"features max-abs-diff {features_diff:.3g} > tolerance {atol:.3g}")
    if min_top1 is not None and agree < min_top1:
        problems.append(f"top-1 agreement {agree:.3f} < {min_top1:g}")
    if problems:
        raise ParityError(f"{'; '.join(problems)} (against {reference}, {len(program_clips)} clips)")
    return parity
