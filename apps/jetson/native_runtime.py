"""The Jetson app's native option: the C++ core (``sdk/native``, ExecuTorch's C++ runtime) through its C API.

``python -m apps.jetson --native ...`` runs the same core that the Android and iOS apps embed, instead of the Python
runtimes: no torch and no Python ExecuTorch bindings in the process. The core needs a kept frame's shorter side to be
the one it asks for (it centre-crops, it does not resize; ``sdk/native/README.md``); :class:`NativeStream` asks the
core about each frame before touching it, passes ``None`` for a frame the sampler drops (never converted or resized),
and resizes a kept frame with the bundle's own preprocessing (:meth:`sdk.Preprocess.resize_short`, the role's one in
a FASTER bundle), as a camera scaler would. Only ``.pte`` programs run (the core is ExecuTorch).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sdk.bundle import Bundle
from sdk.classifier import Prediction
from sdk.native import NativeStreamClassifier
from sdk.stats import LatencyStats

__all__ = ["NativeStream"]


class NativeStream:
    """``push(rgb) -> Prediction | None`` like :class:`sdk.StreamClassifier`, on the native core; ``stats`` has the
    app-side resize under ``preprocess`` and the core's whole call (crop, program, aggregation) under ``model``."""

    backend = "native"

    def __init__(self, bundle: str | Path, *, window: int | None = None, smoothing=None, top_k: int = 3,
                 library: str | Path | None = None):
        with Bundle(bundle) as b:
            m = b.manifest
            self._preprocess = {"model": m.input.preprocess}
            if m.faster is not None:
                self._preprocess.update({r: c.input.preprocess for r, c in m.faster.clip_models.items()})
        self.classifier = NativeStreamClassifier(bundle, library=library, window=window, smoothing=smoothing,
                                                 top_k=top_k)
        self.window, self.precision = self.classifier.window, self.classifier.precision
        self.stats = LatencyStats()

    def push(self, rgb: np.ndarray) -> Prediction | None:
        stats = self.stats
        stats.frames_seen += 1
        t0 = time.perf_counter()
        request = self.classifier.next_frame()
        t1 = time.perf_counter()
        stats.add("sample", (t1 - t0) * 1e3)
        frame = None
        if request["copies"]:
            stats.frames_kept += 1
            frame = self._preprocess[request["role"]].resize_short(rgb)
            stats.add("preprocess", (time.perf_counter() - t1) * 1e3)
        else:
            stats.frames_dropped += 1
        t2 = time.perf_counter()
        prediction = self.classifier.push(frame)
        if frame is not None or prediction is not None:
            stats.add("model", (time.perf_counter() - t2) * 1e3)
        if prediction is not None:
            if prediction.ok:
                stats.predictions += 1
            else:
                stats.frame_errors += 1
        return prediction

    def close(self) -> None:
        self.classifier.close()
