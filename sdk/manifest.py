"""The bundle's manifest schema: ``manifest.json`` parsed into validated, frozen dataclasses, and written back.

:meth:`Manifest.parse` checks every field's type (the JSON Schema ``sdk/schema/manifest-v1.schema.json`` states the
same rules for other languages) and raises :class:`~sdk.errors.BundleError` naming the first problem. The container
that holds the manifest and the files it lists is :mod:`sdk.bundle`.

The program contract (docs/design.md, contracts 2 and 3):

* ``mode="clip"``: ``(clip,) -> (logits,)``; ``clip`` is ``(T, 3, H, W)`` float32 RGB in ``[0, 255]`` -- the sampled
  frames after resize and crop (``input.preprocess``); the steps listed in ``input.in_program`` (scaling, mean/std
  normalisation) happen inside the program.
* ``mode="stream"``: ``(frame, *state) -> (logits, features, *new_state)``; ``frame`` is ``(1, 3, H, W)``, the state
  tensors are listed in ``state`` (start at zeros; ``reset()`` means zeros) and come back in the same order.
* ``mode="aggregate"`` (FASTER, ``role="aggregator"``): ``(features, *state) -> (logits, *new_state)``, one call per
  segment of the video; state as for ``stream``. The FASTER clip programs (``role`` ``expensive`` / ``cheap``) are
  ``mode="clip"`` programs returning ``(logits, features)``, the features already in the aggregator's feature space.
  ``manifest.faster`` (:class:`FasterSpec`) says which clip program runs on which segment and how each samples and
  preprocesses its frames. In an adaptive FASTER bundle (``faster.gate``, :class:`FasterGate`) the cheap program
  returns ``(logits, features, pooled)``: ``pooled`` ``(1, F)`` is the cheap model's own features, which the gate reads.
* Every tensor at a program boundary has rank <= 4. Quantized (int8) inputs/outputs carry ``quantization``
  (``real = scale * (q - zero_point)``).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from sdk.backends.table import BACKENDS
from sdk.errors import BundleError, ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler

__all__ = [
    "ADAPTIVE",
    "CLIP_ROLES",
    "DTYPES",
    "GATES",
    "MANIFEST_FILE",
    "MODES",
    "PRECISIONS",
    "PROGRAM_ROLES",
    "SCHEMA_FILE",
    "SCHEMA_VERSION",
    "FasterClipModel",
    "FasterGate",
    "FasterSpec",
    "InputSpec",
    "Manifest",
    "Parity",
    "Program",
    "Quantization",
    "TensorSpec",
    "TrainingClip",
    "write_manifest",
]

SCHEMA_VERSION = "1.3"  # 1.3: ``faster.gate``; 1.2: ``clip``; 1.1: FASTER bundles (``faster``, ``Program.role``, mode
# ``aggregate``)
MANIFEST_FILE = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
MODES = ("clip", "stream", "aggregate")
PROGRAM_ROLES = ("model", "expensive", "cheap", "aggregator")  # "model": the one classifier of an ordinary bundle
CLIP_ROLES = ("expensive", "cheap")
GATES = ("confidence", "change", "learned")
ADAPTIVE = "adaptive"  # faster.schedule of a bundle with a gate
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64")
PARITY_STATUSES = ("verified", "not_verified")
IN_PROGRAM_STEPS = ("scale", "normalize")
SCHEMA_FILE = Path(__file__).parent / "schema" / "manifest-v1.schema.json"


# ---------------------------------------------------------------------------------------------------- strict parsing
def _fail(where: str, problem: str) -> BundleError:
    return BundleError(f"manifest: {where}: {problem}")


def _get(obj: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    if not isinstance(obj, Mapping):
        raise _fail(where, f"expected an object, got {type(obj).__name__}")
    if key not in obj:
        if optional:
            return None
        raise _fail(f"{where}.{key}", "missing")
    value = obj[key]
    if value is None and optional:
        return None
    # bool is an int in Python; a manifest's true/false must not pass as a number (nor a number as a bool).
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple)
                                                                                     else (kind,)))
    if not ok:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise _fail(f"{where}.{key}", f"expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _choice(obj: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    value = _get(obj, key, where, str)
    if value not in choices:
        raise _fail(f"{where}.{key}", f"{value!r} is not one of {', '.join(choices)}")
    return value


def _no_extra(obj: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    if not isinstance(obj, Mapping):
        raise _fail(where, f"expected an object, got {type(obj).__name__}")
    extra = set(obj) - allowed
    if extra:
        raise _fail(where, f"unknown field(s) {sorted(extra)}")


def _number(obj: Mapping[str, Any], key: str, where: str, optional: bool = False) -> float | None:
    value = _get(obj, key, where, (int, float), optional)
    if value is not None and not math.isfinite(value):
        raise _fail(f"{where}.{key}", f"must be finite, got {value!r}")
    return value


def _positive_or_null(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    value = _number(obj, key, where, optional=True)
    if value is not None and value <= 0:
        raise _fail(f"{where}.{key}", f"must be > 0 or null, got {value}")
    return None if value is None else float(value)


def _relative_file(value: str, where: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value:
        raise _fail(where, f"{value!r} must be a relative path inside the bundle")
    return value


# ------------------------------------------------------------------------------------------------------- the schema
@dataclass(frozen=True)
class Quantization:
    """Affine int8/uint8 quantization of a program input/output: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    @classmethod
    def parse(cls, obj: Any, where: str) -> Quantization:
        _no_extra(obj, where, {"scale", "zero_point"})
        scale = _number(obj, "scale", where)
        if scale <= 0:
            raise _fail(f"{where}.scale", f"must be > 0, got {scale}")
        return cls(float(scale), _get(obj, "zero_point", where, int))

    def quantize(self, x: np.ndarray, dtype: str) -> np.ndarray:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / self.scale) + self.zero_point, info.min, info.max).astype(dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((q.astype(np.float32) - self.zero_point) * self.scale).astype(np.float32)


@dataclass(frozen=True)
class TensorSpec:
    """A named program input/output: fixed shape (rank <= 4), dtype, and quantization for int8/uint8 tensors."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    quantization: Quantization | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> TensorSpec:
        _no_extra(obj, where, {"name", "shape", "dtype", "quantization"})
        name = _get(obj, "name", where, str)
        shape = _get(obj, "shape", where, list)
        if not 1 <= len(shape) <= 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                for d in shape):
            raise _fail(f"{where}.shape", f"expected 1 to 4 positive integers, got {shape!r}")
        dtype = _choice(obj, "dtype", where, DTYPES)
        q = obj.get("quantization")
        quant = None if q is None else Quantization.parse(q, f"{where}.quantization")
        if dtype in ("int8", "uint8") and quant is None:
            raise _fail(where, f"{dtype} tensor {name!r} needs its quantization (scale, zero_point)")
        return cls(name, tuple(shape), dtype, quant)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class Parity:
    """How closely a program matched the torch reference when it was exported, run in its real runtime.

    ``status`` is ``verified`` (it ran here and met the tolerance) or ``not_verified`` (its runtime does not exist on
    the exporting host, e.g. Core ML off macOS; ``reason`` says so). Figures are over the golden inputs and ``clips``
    held-out benchmark clips (FASTER aggregator: feature sequences); ``reference`` names what it was compared with;
    ``tolerance`` is the max-abs-diff bound that was applied (``atol + rtol * max|reference logit|``, see
    ``converters.parity.Tolerance``). ``vs_fp32`` (an int8 program calibrated from an fp32 model): its top-1 agreement
    and max / mean |logit diff| against that model, and the gates they were held to.
    """

    status: str
    reference: str
    reason: str | None = None
    clips: int = 0
    max_abs_diff: float | None = None
    top1_agreement: float | None = None
    golden_max_abs_diff: float | None = None
    tolerance: float | None = None
    min_top1_agreement: float | None = None
    vs_fp32: dict[str, float] | None = None
    features_max_abs_diff: float | None = None  # FASTER clip programs: features (and pooled) outputs, same inputs
    mean_abs_diff: float | None = None  # absent from bundles exported before the int8 gate reported it (issue 27)

    @classmethod
    def parse(cls, obj: Any, where: str) -> Parity:
        _no_extra(obj, where, set(cls.__dataclass_fields__))
        status = _choice(obj, "status", where, PARITY_STATUSES)
        vs = _get(obj, "vs_fp32", where, dict, optional=True)
        if vs is not None:
            vs = {k: float(_number(vs, k, f"{where}.vs_fp32")) for k in vs}
        return cls(status=status, reference=_get(obj, "reference", where, str),
                   reason=_get(obj, "reason", where, str, optional=True),
                   clips=_get(obj, "clips", where, int, optional=True) or 0,
                   max_abs_diff=_number(obj, "max_abs_diff", where, optional=True),
                   top1_agreement=_number(obj, "top1_agreement", where, optional=True),
                   golden_max_abs_diff=_number(obj, "golden_max_abs_diff", where, optional=True),
                   tolerance=_number(obj, "tolerance", where, optional=True),
                   min_top1_agreement=_number(obj, "min_top1_agreement", where, optional=True), vs_fp32=vs,
                   features_max_abs_diff=_number(obj, "features_max_abs_diff", where, optional=True),
                   mean_abs_diff=_number(obj, "mean_abs_diff", where, optional=True))


@dataclass(frozen=True)
class Program:
    """One exported program file and how to call it (see the module docstring for the calling convention)."""

    id: str
    backend: str
    precision: str
    mode: str
    file: str
    sha256: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    state: tuple[TensorSpec, ...] = ()
    parity: Parity | None = None
    details: dict[str, Any] = field(default_factory=dict)
    role: str = "model"

    @classmethod
    def parse(cls, obj: Any, where: str) -> Program:
        _no_extra(obj, where, set(cls.__dataclass_fields__))
        pid = _get(obj, "id", where, str)
        where = f"programs[{pid!r}]"
        sha = _get(obj, "sha256", where, str)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise _fail(f"{where}.sha256", f"expected 64 lowercase hex digits, got {sha!r:.70}")
        tensors = {key: tuple(TensorSpec.parse(t, f"{where}.{key}[{i}]")
                              for i, t in enumerate(_get(obj, key, where, list, optional=key == "state") or []))
                   for key in ("inputs", "outputs", "state")}
        mode = _choice(obj, "mode", where, MODES)
        role = _choice(obj, "role", where, PROGRAM_ROLES) if "role" in obj else "model"
        if mode in ("stream", "aggregate") and not tensors["state"]:
            raise _fail(where, f"a {mode} program needs its state tensors")
        if not tensors["inputs"] or not tensors["outputs"]:
            raise _fail(where, "a program needs at least one input and one output")
        if (role == "aggregator") != (mode == "aggregate"):
            raise _fail(where, f"role {role!r} with mode {mode!r}: the aggregator program, and only it, has mode "
                        "'aggregate'")
        if role in CLIP_ROLES and (mode != "clip" or len(tensors["outputs"]) < 2):
            raise _fail(where, f"a FASTER {role} program is a clip program returning (logits, features)")
        parity = obj.get("parity")
        return cls(id=pid, backend=_choice(obj, "backend", where, tuple(BACKENDS)),
                   precision=_choice(obj, "precision", where, PRECISIONS), mode=mode,
                   file=_relative_file(_get(obj, "file", where, str), f"{where}.file"), sha256=sha,
                   size_bytes=_get(obj, "size_bytes", where, int), **tensors,
                   parity=None if parity is None else Parity.parse(parity, f"{where}.parity"),
                   details=_get(obj, "details", where, dict, optional=True) or {}, role=role)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("inputs", "outputs", "state"):
            d[key] = [t.to_dict() for t in getattr(self, key)]
        return d


@dataclass(frozen=True)
class InputSpec:
    """What the runtime does to frames before a program (``preprocess`` minus ``in_program``), and what the program
    takes: ``dtype`` values in ``value_range`` (RGB, after resize and crop)."""

    preprocess: Preprocess
    in_program: tuple[str, ...] = IN_PROGRAM_STEPS
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 255.0)

    @classmethod
    def parse(cls, obj: Any, where: str = "input") -> InputSpec:
        _no_extra(obj, where, set(cls.__dataclass_fields__))
        try:
            pre = Preprocess.from_dict(_get(obj, "preprocess", where, dict))
        except (ConfigError, TypeError, ValueError) as e:
            raise _fail(f"{where}.preprocess", str(e)) from e
        steps = _get(obj, "in_program", where, list)
        bad = [s for s in steps if s not in IN_PROGRAM_STEPS]
        if bad:
            raise _fail(f"{where}.in_program", f"unknown step(s) {bad}; valid: {', '.join(IN_PROGRAM_STEPS)}")
        lo_hi = _get(obj, "value_range", where, list)
        if len(lo_hi) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lo_hi):
            raise _fail(f"{where}.value_range", f"expected [low, high], got {lo_hi!r}")
        return cls(pre, tuple(steps), _choice(obj, "dtype", where, DTYPES), (float(lo_hi[0]), float(lo_hi[1])))

    def to_dict(self) -> dict[str, Any]:
        return {"preprocess": self.preprocess.to_dict(), "in_program": list(self.in_program), "dtype": self.dtype,
                "value_range": list(self.value_range)}


@dataclass(frozen=True)
class FasterClipModel:
    """How one FASTER clip model sees a segment: its sampler over the segment's frames and its input spec."""

    sampler: Sampler
    input: InputSpec
    gmacs_per_clip: float | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> FasterClipModel:
        _no_extra(obj, where, {"sampler", "input", "gmacs_per_clip"})
        try:
            sampler = Sampler.from_dict(_get(obj, "sampler", where, dict))
        except (ConfigError, TypeError, ValueError) as e:
            raise _fail(f"{where}.sampler", str(e)) from e
        return cls(sampler, InputSpec.parse(_get(obj, "input", where, dict), f"{where}.input"),
                   _number(obj, "gmacs_per_clip", where, optional=True))

    def to_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.to_dict(), "input": self.input.to_dict(), "gmacs_per_clip": self.gmacs_per_clip}


@dataclass(frozen=True)
class FasterGate:
    """The adaptive FASTER schedule's rule (schema 1.3): the cheap clip model runs on every segment, the expensive one
    only where the gate's score of the cheap model's outputs exceeds the threshold (``threshold`` unless the runtime
    is given another); the aggregator takes the expensive features where it ran, the cheap ones elsewhere.

    Scores (:mod:`sdk.gate` computes them): ``confidence`` = 1 - max softmax of the cheap logits; ``change`` = cosine
    distance between the cheap model's ``pooled`` features of this segment and the previous one (the first segment
    after a start or reset scores 2); ``learned`` = ``sigmoid(weights . [pooled, confidence, change] + bias)``
    (``F + 2`` weights, the training's standardisation folded in). ``fire_rate`` is the share of training segments
    that fired at ``threshold``; ``curve`` the training split's ``(fire_rate, threshold)`` pairs, to pick another.
    """

    kind: str
    threshold: float
    fire_rate: float
    curve: tuple[tuple[float, float], ...] = ()
    weights: tuple[float, ...] | None = None
    bias: float | None = None

    @classmethod
    def parse(cls, obj: Any, where: str = "faster.gate") -> FasterGate:
        _no_extra(obj, where, set(cls.__dataclass_fields__))
        kind = _choice(obj, "kind", where, GATES)
        curve = []
        for i, pair in enumerate(_get(obj, "curve", where, list, optional=True) or []):
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
                raise _fail(f"{where}.curve[{i}]", f"expected [fire_rate, threshold], got {pair!r:.60}")
            curve.append((float(pair[0]), float(pair[1])))
        weights = _get(obj, "weights", where, list, optional=True)
        if (kind == "learned") != (weights is not None):
            raise _fail(where, "the learned gate, and only it, has weights and a bias")
        if weights is not None and (len(weights) < 3 or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in weights)):
            raise _fail(f"{where}.weights", "expected F + 2 finite numbers (features, confidence, change)")
        bias = _number(obj, "bias", where, optional=kind != "learned")
        return cls(kind, float(_number(obj, "threshold", where)), float(_number(obj, "fire_rate", where)),
                   tuple(curve), None if weights is None else tuple(float(w) for w in weights),
                   None if bias is None else float(bias))

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "threshold": self.threshold, "fire_rate": self.fire_rate,
               "curve": [list(p) for p in self.curve]}
        return out if self.weights is None else {**out, "weights": list(self.weights), "bias": self.bias}


@dataclass(frozen=True)
class FasterSpec:
    """The FASTER schedule of a bundle (Zhu et al., AAAI 2020): how a runtime drives its clip and aggregator programs.

    A video or stream is cut into consecutive *segments* of ``segment_frames`` frames. Segment ``i`` is seen by the
    clip model ``pattern[i % len(pattern)]`` (``"expensive"`` or ``"cheap"``; ``"1:3"`` is expensive, cheap, cheap,
    cheap), which samples its frames from the segment with its own sampler and preprocessing (``clip_models``); its
    clip program returns ``(logits, features)``, and the aggregator program folds the features into its state and
    returns the video's logits so far. The models were trained on videos of ``segments`` segments. With a ``gate``
    (schema 1.3, schedule ``"adaptive"``, pattern ``("cheap",)``) the cheap model sees every segment and the gate
    decides, segment by segment, whether the expensive one sees it too (:class:`FasterGate`).
    """

    schedule: str
    pattern: tuple[str, ...]
    segment_frames: int
    segments: int
    aggregator: str
    clip_models: dict[str, FasterClipModel]
    gate: FasterGate | None = None  # adaptive bundles: schedule "adaptive", pattern ("cheap",), the gate adds expensive

    def role(self, segment: int) -> str:
        """The clip model that sees segment ``segment`` (0-based, counted from the start or the last reset); with a
        gate, the cheap one, which every segment sees."""
        return self.pattern[segment % len(self.pattern)]

    @property
    def roles(self) -> tuple[str, ...]:
        """The clip models the bundle runs, pattern order first."""
        return (*dict.fromkeys(self.pattern), *(("expensive",) if self.gate is not None else ()))

    @classmethod
    def parse(cls, obj: Any, where: str = "faster") -> FasterSpec:
        _no_extra(obj, where, set(cls.__dataclass_fields__))
        pattern = _get(obj, "pattern", where, list)
        if not pattern or any(r not in CLIP_ROLES for r in pattern):
            raise _fail(f"{where}.pattern", f"expected a non-empty list of {' / '.join(CLIP_ROLES)}, got {pattern!r}")
        ints = {}
        for key in ("segment_frames", "segments"):
            ints[key] = _get(obj, key, where, int)
            if ints[key] < 1:
                raise _fail(f"{where}.{key}", f"must be >= 1, got {ints[key]}")
        models = _get(obj, "clip_models", where, dict)
        _no_extra(models, f"{where}.clip_models", set(CLIP_ROLES))
        missing = sorted(set(pattern) - set(models))
        if missing:
            raise _fail(f"{where}.clip_models", f"the pattern uses {missing} but they are not described")
        gate = None if obj.get("gate") is None else FasterGate.parse(obj["gate"], f"{where}.gate")
        schedule = _get(obj, "schedule", where, str)
        if gate is not None and (schedule != ADAPTIVE or pattern != ["cheap"] or "expensive" not in models):
            raise _fail(where, f"a gate goes with schedule {ADAPTIVE!r}, pattern ['cheap'] and both clip models")
        return cls(schedule, tuple(pattern), ints["segment_frames"], ints["segments"],
                   _get(obj, "aggregator", where, str),
                   {r: FasterClipModel.parse(m, f"{where}.clip_models.{r}") for r, m in models.items()}, gate)

    def to_dict(self) -> dict[str, Any]:
        out = {"schedule": self.schedule, "pattern": list(self.pattern), "segment_frames": self.segment_frames,
               "segments": self.segments, "aggregator": self.aggregator,
               "clip_models": {r: m.to_dict() for r, m in self.clip_models.items()}}
        return out if self.gate is None else {**out, "gate": self.gate.to_dict()}


@dataclass(frozen=True)
class TrainingClip:
    """The videos the model was trained on, as the training checkpoint recorded them (``dataset["clip"]``): the
    median frame count ``frames``, frame rate ``fps`` and duration ``seconds`` (None for frame folders, which have no
    rate) over ``videos`` training videos.

    A clip model saw whole training videos through its sampler, so a stream's window should span what one training
    video spanned: :func:`sdk.classifier.default_window` derives the default window from it. Bundles exported before
    schema 1.2 have none.
    """

    frames: int
    fps: float | None = None
    seconds: float | None = None
    videos: int | None = None

    @classmethod
    def parse(cls, obj: Any, where: str = "clip") -> TrainingClip:
        _no_extra(obj, where, set(cls.__dataclass_fields__))
        frames = _get(obj, "frames", where, int)
        if frames < 1:
            raise _fail(f"{where}.frames", f"must be >= 1, got {frames}")
        videos = _get(obj, "videos", where, int, optional=True)
        if videos is not None and videos < 1:
            raise _fail(f"{where}.videos", f"must be >= 1 or null, got {videos}")
        fps, seconds = (_positive_or_null(obj, key, where) for key in ("fps", "seconds"))
        return cls(frames, fps, seconds, videos)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        parts = [f"{self.seconds:.2f} s" if self.seconds is not None else "duration unknown",
                 f"{self.fps:g} fps" if self.fps is not None else "frame rate unknown"]
        if self.videos is not None:
            parts.append(f"median of {self.videos} videos")
        return f"{self.frames} frames ({', '.join(parts)})"


@dataclass(frozen=True)
class Manifest:
    """The parsed, type-checked ``manifest.json``."""

    name: str
    labels: tuple[str, ...]
    input: InputSpec
    sampler: Sampler
    programs: tuple[Program, ...]
    golden: dict[str, str]
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    producer: dict[str, str] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    faster: FasterSpec | None = None
    clip: TrainingClip | None = None  # absent from bundles exported before schema 1.2

    @classmethod
    def parse(cls, obj: Any) -> Manifest:
        """The manifest of a parsed ``manifest.json``; anything malformed raises :class:`BundleError` (only)."""
        try:
            return cls._parse(obj)
        except (TypeError, ValueError, AttributeError, KeyError) as e:  # a shape no rule above names: still typed
            raise BundleError(f"manifest: malformed ({type(e).__name__}: {e})") from e

    @classmethod
    def _parse(cls, obj: Any) -> Manifest:
        if not isinstance(obj, Mapping):
            raise _fail("top level", f"expected an object, got {type(obj).__name__}")
        version = _get(obj, "schema_version", "manifest", str)
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise BundleError(f"manifest: schema_version {version!r} is not supported by this sdk (it reads "
                              f"{SCHEMA_VERSION.split('.')[0]}.x): re-export the bundle or upgrade the sdk")
        _no_extra(obj, "manifest", set(cls.__dataclass_fields__))
        labels = _get(obj, "labels", "manifest", list)
        if not labels or not all(isinstance(x, str) and x for x in labels):
            raise _fail("labels", "expected a non-empty list of non-empty strings")
        try:
            sampler = Sampler.from_dict(_get(obj, "sampler", "manifest", dict))
        except (ConfigError, TypeError, ValueError) as e:
            raise _fail("sampler", str(e)) from e
        programs = tuple(Program.parse(p, f"programs[{i}]")
                         for i, p in enumerate(_get(obj, "programs", "manifest", list)))
        ids = [p.id for p in programs]
        if len(set(ids)) != len(ids):
            raise _fail("programs", f"duplicate program ids in {ids}")
        golden = _get(obj, "golden", "manifest", dict)
        _no_extra(golden, "golden", {"file", "sha256"})
        _relative_file(_get(golden, "file", "golden", str), "golden.file")
        _get(golden, "sha256", "golden", str)
        for p in programs:
            if p.outputs[0].shape[-1] != len(labels):
                raise _fail(f"programs[{p.id!r}].outputs[0]", f"logits have {p.outputs[0].shape[-1]} classes but "
                            f"there are {len(labels)} labels")
        faster = obj.get("faster")
        faster = None if faster is None else FasterSpec.parse(faster)
        _check_roles(programs, faster)
        clip = obj.get("clip")
        return cls(name=_get(obj, "name", "manifest", str), labels=tuple(labels),
                   input=InputSpec.parse(_get(obj, "input", "manifest", dict)), sampler=sampler, programs=programs,
                   golden=dict(golden), provenance=_get(obj, "provenance", "manifest", dict, optional=True) or {},
                   created=_get(obj, "created", "manifest", str, optional=True) or "",
                   producer=_get(obj, "producer", "manifest", dict, optional=True) or {}, schema_version=version,
                   faster=faster, clip=None if clip is None else TrainingClip.parse(clip))

    def to_dict(self) -> dict[str, Any]:
        d = {"schema_version": self.schema_version, "name": self.name, "created": self.created,
             "producer": dict(self.producer), "labels": list(self.labels), "input": self.input.to_dict(),
             "sampler": self.sampler.to_dict(), "programs": [p.to_dict() for p in self.programs],
             "golden": dict(self.golden), "provenance": self.provenance}
        if self.faster is not None:
            d["faster"] = self.faster.to_dict()
        if self.clip is not None:
            d["clip"] = self.clip.to_dict()
        return d

    def program(self, backend: str | None = None, precision: str | None = None, mode: str | None = None,
                role: str | None = None) -> Program:
        """The first program matching the given backend / precision / mode / role (``None`` = any)."""
        for p in self.programs:
            if all(want is None or got == want for want, got in
                   ((backend, p.backend), (precision, p.precision), (mode, p.mode), (role, p.role))):
                return p
        have = ", ".join(p.id for p in self.programs) or "none"
        raise BundleError(f"no {role or ''} {mode or ''} {backend or ''} {precision or ''} program in this bundle "
                          f"(it has: {have})".replace("  ", " ").replace("  ", " "))


def _check_roles(programs: tuple[Program, ...], faster: FasterSpec | None) -> None:
    """An ordinary bundle holds ``model`` programs only; a FASTER bundle, for every backend x precision it has, the
    clip programs of the roles its pattern uses and the aggregator program."""
    roles = {p.role for p in programs}
    if faster is None:
        if roles - {"model"}:
            raise _fail("programs", f"programs with FASTER roles {sorted(roles - {'model'})} need a 'faster' section")
        return
    if "model" in roles:
        raise _fail("programs", "a FASTER bundle's programs have the roles expensive / cheap / aggregator, not model")
    needed = set(faster.roles) | {"aggregator"}
    for backend, precision in sorted({(p.backend, p.precision) for p in programs}):
        have = {p.role for p in programs if (p.backend, p.precision) == (backend, precision)}
        if needed - have:
            raise _fail("programs", f"the {backend} {precision} programs lack the FASTER role(s) "
                        f"{sorted(needed - have)}")
    if faster.gate is not None and any(p.role == "cheap" and len(p.outputs) < 3 for p in programs):
        raise _fail("programs", "the cheap program of an adaptive FASTER bundle returns (logits, features, pooled): "
                    "its gate reads pooled")


def write_manifest(manifest: Manifest, directory: str | Path) -> Path:
    """Write ``manifest.json`` into ``directory`` (pretty-printed, stable key order, fsynced)."""
    path = Path(directory) / MANIFEST_FILE
    text = json.dumps(manifest.to_dict(), indent=2, allow_nan=False)
    Manifest.parse(json.loads(text))  # what is written must read back
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path
