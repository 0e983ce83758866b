"""Parity at export: a program run in its real runtime against the torch reference, on golden and held-out inputs.

Clip programs are compared output by output on every clip. Stream programs run each clip frame by frame from zero
state in the runtime *and* in torch; every step's outputs are compared, and the clip's prediction is the mean of its
per-step logits (what the offline model computes, see ``ConsensusHead``). A FASTER aggregator program runs feature
sequences step by step the same way; its prediction is the last step's logits.

An int8 program calibrated here is also compared with the fp32 model (:class:`Tolerance`), and a refusal says what to
do about it (:func:`measure`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sdk.manifest import Parity, Program
from training.config import option

__all__ = ["MIN_TOLERATED", "Outputs", "ParityError", "Tolerance", "figures", "measure", "parity_lines",
           "run_clips"]

Run = Callable[[Sequence[np.ndarray]], list[np.ndarray]]
MIN_TOLERATED = 3  # disagreeing clips an agreement gate must tolerate for its figure to mean anything


class ParityError(RuntimeError):
    """An exported program disagrees with its torch reference beyond the tolerance: the export fails."""


@dataclass(frozen=True)
class Tolerance:
    """Largest max-abs-diff of the logits allowed per precision (None: not checked), and the gates of an int8 program.

    The bound is ``atol + rtol * max|reference logits|``, like ``numpy.allclose``: float rounding differences grow
    with the size of the activations: a random bLVNet-R50 with logits up to 890 measured 1.2e-3 in fp32 (.pte and
    .tflite vs torch; 1.4e-6 of its largest logit), over the fixed 1e-3 that suits logits of +-5. ``rtol`` 1e-5 is
    ~100x float32's epsilon: room for a deep net's accumulated rounding, far below a real mismatch.

    An int8 program is held to its torch int8 reference (the program it was lowered from) by top-1 agreement, since
    quantization moves logits by more than any fixed bound on a trained model. When it was calibrated here from an
    fp32 model, it is held to that model too: a fault of the int8 model itself (calibration on frames unlike the
    data) is shared by both int8 sides, so only fp32 can see it. Against fp32, top-1 agreement, and the mean |logit
    diff| in units of the fp32 logits' *spread* (their std over the parity clips, mean over classes: how far the
    logits move with the input, which is what the classifier reads). A program that ignores its input is off by ~0.8
    spreads whatever its agreement; PTQ measured 0.2-0.3, calibration on black frames 1.6-1.9 (docs/export.md).
    ``int8_max_fp32_error=None`` turns that bound off (random-weight latency references)."""

    fp32: float = option(1e-3, help="max |logit diff| for fp32 programs", flag="--atol-fp32")
    fp16: float = option(5e-2, help="max |logit diff| for fp16 programs", flag="--atol-fp16")
    int8: float | None = option(None, help="max |logit diff| for int8 programs (default: none)", flag="--atol-int8")
    int8_min_top1: float = option(0.9, help="smallest top-1 agreement of an int8 program with its reference",
                                  flag="--int8-min-agreement")
    int8_min_fp32_top1: float = option(0.8, help="smallest top-1 agreement of an int8 program with the fp32 model "
                                                 "it was calibrated from", flag="--int8-min-fp32-agreement")
    int8_max_fp32_error: float | None = option(0.5, help="largest mean |logit diff| of an int8 program from the fp32 "
                                                         "model it was calibrated from, in units of the fp32 logits' "
                                                         "spread between clips", flag="--int8-max-fp32-error")
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

    def coarse(self, precision: str, clips: int, against_fp32: bool) -> str | None:
        """Why ``clips`` parity clips are too few for the int8 agreement gates (``against_fp32``: the fp32 one too) to
        mean anything, or None: the margin between the strictest gate and 1.0 holds fewer than
        :data:`MIN_TOLERATED` disagreeing clips, so one or two unlucky clips refuse a usable program (0.889 on 18
        clips at the 0.9 gate: one clip is 5.6 points)."""
        gate = max(self.int8_min_top1, self.int8_min_fp32_top1 if against_fp32 else 0.0)
        if precision != "int8" or gate <= 0.0:
            return None
        tolerated = math.floor(clips * (1.0 - gate) + 1e-9)
        if tolerated >= MIN_TOLERATED:
            return None
        need = (f"at least {math.ceil(MIN_TOLERATED / (1.0 - gate) - 1e-9)} clips (--parity-clips, or a --data split "
                "with more videos)" if gate < 1.0 else "a gate below 1")
        return (f"{clips} parity clips are too few for the {gate:g} top-1 agreement gate: one clip is "
                f"{100.0 / clips:.1f} points, and the margin to 1.0 tolerates {tolerated} disagreeing "
                f"clip{'' if tolerated == 1 else 's'}; a meaningful check needs {need}")


def _flag(name: str) -> str:
    """The command-line flag of a :class:`Tolerance` field."""
    return Tolerance.__dataclass_fields__[name].metadata["flag"]


class Outputs(NamedTuple):
    """What a program returned on a list of inputs: per-call logits ``(C, S, K)``, the prediction of each input
    ``(C, K)``, and, for FASTER clip programs, the ``features`` output ``(C, S, ...)`` and the adaptive cheap
    program's ``pooled`` output (else None)."""

    steps: np.ndarray
    clips: np.ndarray
    features: np.ndarray | None = None
    pooled: np.ndarray | None = None


def run_clips(run: Run, mode: str, inputs: Sequence[tuple[np.ndarray, ...]],
              zero_state: Sequence[np.ndarray] = ()) -> Outputs:
    """Run ``run`` on each input (see :class:`Outputs`).

    ``mode="clip"``: each input is ``(clip,)``, S = 1. ``mode="stream"``: each input is ``(frames (T, 1, 3, H, W),)``,
    stepped from ``zero_state`` (outputs ``logits, features, *state``); S = T and the prediction is the mean over
    steps. ``mode="aggregate"``: each input is ``(features (S, 1, ...),)``, stepped from ``zero_state`` (outputs
    ``logits, *state``); the prediction is the last step's logits (the video's, once every segment was seen).
    """
    steps_all, clip_all, features_all, pooled_all = [], [], [], []
    state_at = {"stream": 2, "aggregate": 1}.get(mode)
    for (x,) in inputs:
        if state_at is None:
            out = run([x])
            logits = out[0].reshape(1, -1)
            if len(out) > 1:
                features_all.append(out[1][None])
            if len(out) > 2:
                pooled_all.append(out[2][None])
        else:
            state, rows = [np.array(s) for s in zero_state], []
            for item in x:
                out = run([item, *state])
                rows.append(out[0].reshape(-1))
                state = out[state_at:]
            logits = np.stack(rows)
        steps_all.append(logits)
        clip_all.append(logits[-1] if mode == "aggregate" else logits.mean(0))
    return Outputs(np.stack(steps_all), np.stack(clip_all), np.stack(features_all) if features_all else None,
                   np.stack(pooled_all) if pooled_all else None)


def measure(program_steps: np.ndarray, program_clips: np.ndarray, ref_steps: np.ndarray, ref_clips: np.ndarray, *,
            precision: str, reference: str, tolerance: Tolerance, golden_diff: float,
            fp32_clips: np.ndarray | None = None, features_diff: float | None = None) -> Parity:
    """The :class:`Parity` of a program's outputs against the reference's (and, for an int8 program calibrated from
    an fp32 model, against ``fp32_clips``); raises :class:`ParityError` beyond the tolerance, with every figure and
    what to do. ``features_diff`` (FASTER clip programs) is held to the same bound as the logits."""
    steps_diff = np.abs(program_steps - ref_steps)
    diff, agree = float(steps_diff.max()), _agreement(program_clips, ref_clips)
    vs = _vs_fp32(program_clips, fp32_clips, tolerance) if fp32_clips is not None and precision == "int8" else None
    atol, min_top1 = tolerance.bound(precision, ref_steps), tolerance.min_top1(precision)
    parity = Parity(status="verified", reference=reference, clips=len(program_clips), max_abs_diff=diff,
                    mean_abs_diff=float(steps_diff.mean()), top1_agreement=agree, golden_max_abs_diff=golden_diff,
                    tolerance=atol, min_top1_agreement=min_top1, vs_fp32=vs, features_max_abs_diff=features_diff)
    problems, todo = [], []
    if atol is not None and max(diff, golden_diff) > atol:
        problems.append(f"max-abs-diff {max(diff, golden_diff):.3g} > tolerance {atol:.3g} (atol "
                        f"{tolerance.atol(precision):g} + rtol {tolerance.rtol:g} x max|logit| "
                        f"{np.abs(ref_steps).max():.3g})")
    if atol is not None and features_diff is not None and features_diff > atol:
        problems.append(f"features max-abs-diff {features_diff:.3g} > tolerance {atol:.3g}")
    if min_top1 is not None and agree < min_top1:
        problems.append(f"top-1 agreement {agree:.3f} < {min_top1:g}")
        todo.append("check on more clips (--parity-clips, or a --data split with more videos): the runtime rounds "
                    "differently from torch and flips near-tied clips; or, if that is acceptable, lower the gate "
                    f"({_flag('int8_min_top1')})")
    off_fp32 = [] if vs is None else _off_fp32(vs, tolerance)
    problems += off_fp32
    if off_fp32:
        shared = min_top1 is None or agree >= min_top1
        todo.append(("the program follows its torch int8 reference, so the int8 model itself is off the fp32 model (a "
                     "calibration fault both share: calibration clips unlike the data, or too few)" if shared else
                     "the program is off the fp32 model")
                    + ": calibrate on more clips that look like the data (--calibration-clips, --calibration-split), "
                    "or quantize with QAT (python -m training.qat) and export its int8_qat.pt2; accept the loss only "
                    f"by lowering {_flag('int8_min_fp32_top1')} / {_flag('int8_max_fp32_error')}")
    if problems:
        coarse = tolerance.coarse(precision, len(program_clips), vs is not None)
        where = (f"on {len(program_clips)} clips, {figures(parity)}" if precision == "int8" else
                 f"against {reference}, {len(program_clips)} clips")
        raise ParityError(f"{'; '.join(problems)} ({where})" + "".join(f". To do: {t}" for t in todo)
                          + (f". Note: {coarse}" if coarse else ""))
    return parity


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def _vs_fp32(program_clips: np.ndarray, fp32_clips: np.ndarray, tolerance: Tolerance) -> dict[str, float]:
    """The program against the fp32 model on the parity clips, with the gates applied to it. The logit bound needs
    the fp32 logits to vary between clips (two clips at least); where they do not, or it is off, it is left out."""
    d = np.abs(program_clips - fp32_clips)
    vs = {"top1_agreement": _agreement(program_clips, fp32_clips), "max_abs_diff": float(d.max()),
          "mean_abs_diff": float(d.mean()), "min_top1_agreement": tolerance.int8_min_fp32_top1}
    spread = float(fp32_clips.std(axis=0).mean())
    if spread > 0.0 and tolerance.int8_max_fp32_error is not None:
        vs |= {"logit_spread": spread, "max_mean_abs_diff": tolerance.int8_max_fp32_error * spread}
    return vs


def _off_fp32(vs: dict[str, float], tolerance: Tolerance) -> list[str]:
    """The fp32 gates an int8 program fails (:func:`_vs_fp32`'s figures)."""
    problems = []
    if vs["top1_agreement"] < vs["min_top1_agreement"]:
        problems.append(f"top-1 agreement with fp32 {vs['top1_agreement']:.3f} < {vs['min_top1_agreement']:g}")
    if vs["mean_abs_diff"] > vs.get("max_mean_abs_diff", np.inf):
        problems.append(f"mean |logit diff| from fp32 {vs['mean_abs_diff']:.3g} > {vs['max_mean_abs_diff']:.3g} = "
                        f"{tolerance.int8_max_fp32_error:g} x the fp32 logits' spread {vs['logit_spread']:.3g}")
    return problems


def figures(parity: Parity) -> str:
    """An int8 program's figures against its reference and, when it was calibrated here, the fp32 model."""
    gate = "" if parity.min_top1_agreement is None else f" (gate {parity.min_top1_agreement:g})"
    text = (f"vs {parity.reference}: top-1 agreement {parity.top1_agreement:.3f}{gate}, |logit diff| max "
            f"{parity.max_abs_diff:.3g} mean {parity.mean_abs_diff:.3g}")
    vs = parity.vs_fp32
    if vs:
        text += (f"; vs torch fp32: top-1 agreement {vs['top1_agreement']:.3f} (gate {vs['min_top1_agreement']:g}), "
                 f"|logit diff| max {vs['max_abs_diff']:.3g} mean {vs['mean_abs_diff']:.3g}"
                 + (f" (gate {vs['max_mean_abs_diff']:.3g} = {vs['max_mean_abs_diff'] / vs['logit_spread']:g} x "
                    f"spread {vs['logit_spread']:.3g})"
                    if "max_mean_abs_diff" in vs else " (no logit gate)"))
    return text


def parity_lines(programs: Sequence[Program]) -> list[str]:
    """Under the report's table: each verified int8 program's figures against both references (:func:`figures`)."""
    return [f"{p.id} on {p.parity.clips} clips: {figures(p.parity)}" for p in programs
            if p.precision == "int8" and p.parity is not None and p.parity.status == "verified"]
