"""The adaptive FASTER gate at run time: whether the expensive clip model runs on this segment, from the cheap
model's outputs (the rule is the bundle's :class:`~sdk.manifest.FasterGate`; the training side's scores are
``training.models.faster.gate_scores``, which these equal in float32 rounding).

Causal and stateful like the aggregator: ``change`` compares with the previous segment's pooled features, so a
stream's gate is :meth:`Gate.reset` with the stream.
"""
from __future__ import annotations

import math

import numpy as np

from sdk.errors import BundleError, ConfigError
from sdk.manifest import FasterGate

__all__ = ["FIRST_CHANGE", "Gate"]

FIRST_CHANGE = 2.0  # the first segment's change score: the largest cosine distance (a stream starts with news)
_EPS = 1e-8  # as torch.nn.functional.cosine_similarity's


class Gate:
    """One stream's gate: :meth:`fires` per segment, in order. ``threshold`` overrides the bundle's (``-inf``: the
    expensive model on every segment, ``inf``: never)."""

    def __init__(self, rule: FasterGate, threshold: float | None = None, features: int | None = None):
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or math.isnan(threshold)):
            raise ConfigError(f"gate_threshold must be a number (inf: never run the expensive model, -inf: always), "
                              f"got {threshold!r}")
        if rule.weights is not None and features is not None and len(rule.weights) != features + 2:
            raise BundleError(f"manifest: faster.gate.weights has {len(rule.weights)} weights but the cheap program's "
                              f"pooled output has {features} features (+ 2 expected): export the bundle again")
        self.rule = rule
        self.threshold = rule.threshold if threshold is None else float(threshold)
        self._weights = None if rule.weights is None else np.asarray(rule.weights, np.float64)
        self.reset()

    def reset(self) -> None:
        self._previous: np.ndarray | None = None

    def score(self, logits: np.ndarray, pooled: np.ndarray) -> float:
        """This segment's score (and the segment becomes the previous one)."""
        z = logits.astype(np.float64).reshape(-1)
        p = np.exp(z - z.max())
        confidence = 1.0 - float(p.max() / p.sum())
        f = pooled.astype(np.float64).reshape(-1)
        if self._previous is None:
            change = FIRST_CHANGE
        else:
            g = self._previous
            change = 1.0 - float(f @ g) / (max(float(np.linalg.norm(f)), _EPS) * max(float(np.linalg.norm(g)), _EPS))
        self._previous = f
        if self.rule.kind == "confidence":
            return confidence
        if self.rule.kind == "change":
            return change
        w = self._weights
        x = float(w[:-2] @ f) + w[-2] * confidence + w[-1] * change + self.rule.bias
        return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))

    def fires(self, logits: np.ndarray, pooled: np.ndarray) -> bool:
        """Whether the expensive model runs on this segment: its score above the threshold."""
        return self.score(logits, pooled) > self.threshold
