"""``sdk.load(path)``: a bundle plus the runners of the programs one backend needs, checked against its golden vectors.

Backend choice (``backend="auto"``): among the (backend, precision) pairs the bundle has programs for, the available
ones on this host (runtime importable, on a platform it runs on) are tried in the order

* precision: ``int8``, ``fp16``, ``fp32`` (the smaller, faster program first: every int8 program in a bundle passed its
  parity gate at export);
* backend: the rows of :data:`sdk.backends.table.BACKENDS` (measured CPU speed: Core ML on macOS, then ExecuTorch,
  LiteRT, ONNX Runtime).

The first pair whose programs all load wins; a runtime that is missing or fails to load its program moves on to the
next pair (the reasons are kept in :attr:`Model.skipped`). An explicit ``backend=`` loads that backend or raises.

``threads``: intra-op threads of every runner (None = the runtime's default: all cores for ExecuTorch and LiteRT).
ExecuTorch's threadpool is process-wide and ignores ``torch.set_num_threads``; ``threads`` resets it for the whole
process (``_unsafe_reset_threadpool``), so two ExecuTorch models in one process share the last setting.

A :class:`Model` is not thread-safe (its runners are not): load one per thread.
"""
from __future__ import annotations

import importlib.util
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from sdk.backends import Runner, load_runner
from sdk.backends.table import BACKENDS, auto_rank, get_backend
from sdk.bundle import Bundle
from sdk.errors import BackendUnavailableError, BundleError, ConfigError, SdkError
from sdk.manifest import InputSpec, Manifest, Program
from sdk.samplers import Sampler

__all__ = ["PRECISION_ORDER", "Model", "VerifyReport", "available_backends", "is_available", "load"]

PRECISION_ORDER = ("int8", "fp16", "fp32")


def is_available(backend: str) -> bool:
    """True when ``backend``'s runtime is installed and can run on this platform (nothing is imported)."""
    row = get_backend(backend)
    return row.runs_on(platform.system()) and importlib.util.find_spec(row.package) is not None


def available_backends() -> list[str]:
    """The bundle backends that can run here, in ``auto``'s order (:data:`sdk.backends.table.BACKENDS`)."""
    return [b for b in BACKENDS if is_available(b)]


@dataclass(frozen=True)
class VerifyReport:
    """Golden-vector check of each program: ``{program id: (max abs diff, tolerance, against)}``."""

    results: dict[str, tuple[float, float, str]]

    def __str__(self) -> str:
        return "; ".join(f"{pid}: max|diff| {d:.2e} <= {tol:.2e} vs {what}" for pid, (d, tol, what) in
                         self.results.items())


class Model:
    """A loaded bundle: its manifest and one runner per program role, all of one backend and precision.

    ``kind`` is ``"clip"`` (one clip program), ``"stream"`` (one step program) or ``"faster"`` (expensive / cheap
    clip programs and the aggregator program). Use :class:`~sdk.classifier.VideoClassifier` /
    :class:`~sdk.classifier.StreamClassifier` on it; :meth:`run` calls one program directly.
    """

    def __init__(self, bundle: Bundle, backend: str, precision: str, runners: Mapping[str, Runner],
                 programs: Mapping[str, Program], threads: int | None = None, skipped: Sequence[str] = ()):
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        self.backend = backend
        self.precision = precision
        self.threads = threads
        self.runners = dict(runners)
        self.programs = dict(programs)
        self.skipped = list(skipped)
        if self.manifest.faster is not None:
            self.kind = "faster"
        else:
            self.kind = self.programs["model"].mode

    # ---- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_runners(cls, bundle: Bundle, runners: Mapping[str, Runner], *, like_backend: str | None = None,
                     backend: str = "torch", precision: str = "fp32") -> Model:
        """A model whose programs are the given runners (e.g. :class:`~sdk.backends.torch_reference.TorchRunner`)
        described by the bundle's programs of ``like_backend`` (default: the first program of each role)."""
        programs = {}
        for role in runners:
            programs[role] = bundle.manifest.program(backend=like_backend, role=role)
        return cls(bundle, backend, precision, runners, programs)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.programs)

    def input_spec(self, role: str = "model") -> InputSpec:
        """The preprocessing a role's program expects (a FASTER clip model has its own)."""
        faster = self.manifest.faster
        if faster is not None and role in faster.clip_models:
            return faster.clip_models[role].input
        return self.manifest.input

    def sampler(self, role: str = "model") -> Sampler:
        faster = self.manifest.faster
        if faster is not None and role in faster.clip_models:
            return faster.clip_models[role].sampler
        return self.manifest.sampler

    def zero_state(self, role: str = "model") -> list[np.ndarray]:
        """Fresh state tensors of a stream / aggregator program (zeros, manifest order)."""
        return [np.zeros(s.shape, np.float32) for s in self.programs[role].state]

    def run(self, role: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One call of a role's program: float32 arrays in program order (inputs, then state)."""
        return self.runners[role].run(inputs)

    # ---- golden vectors ----------------------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Run every loaded program on the bundle's golden inputs; raise :class:`BundleError` if any output differs.

        Compared with what the same program returned in its runtime at export (``{program id}/logits``) within
        ``1e-4 + 1e-5 * max|expected|`` (fp32/fp16; thread counts reorder float sums) or ``1e-3 + 1e-2 * max|expected|``
        and the same top-1 (int8); programs without such a record (e.g. Core ML exported on Linux), and torch reference
        runners (:meth:`from_runners`), are compared with the torch reference within the parity tolerance, or 1e-3.
        """
        golden = self.bundle.golden()
        results = {}
        for role, program in self.programs.items():
            results[program.id] = self._verify_one(role, program, golden)
        return VerifyReport(results)

    def _golden_input(self, program: Program, golden: Mapping[str, np.ndarray]) -> np.ndarray:
        name = program.inputs[0].name
        for key in (f"{program.id}/input/{name}", f"{program.role}/input/{name}", f"{program.mode}/input/{name}"):
            if key in golden:
                return golden[key]
        raise BundleError(f"bundle {self.bundle.source}: golden.npz has no input for program {program.id!r} "
                          f"(looked for {program.role}/input/{name}, {program.mode}/input/{name})")

    def _expected(self, program: Program, golden: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str, bool]:
        if f"{program.id}/logits" in golden and self.backend == program.backend:
            return golden[f"{program.id}/logits"], f"its own export-time outputs ({program.id}/logits)", True
        kind = "quantized" if program.precision == "int8" else "fp32"
        for key in (f"{program.role}/reference_{kind}/logits", f"{program.mode}/reference_{kind}/logits",
                    f"{program.mode}/reference_fp32/logits"):
            if key in golden:
                return golden[key], f"the torch reference ({key})", False
        raise BundleError(f"bundle {self.bundle.source}: golden.npz has no expected outputs for {program.id!r}")

    def _verify_one(self, role: str, program: Program, golden: Mapping[str, np.ndarray]) -> tuple[float, float, str]:
        x = self._golden_input(program, golden)
        expected, what, own = self._expected(program, golden)
        rows = []
        for item in x:
            if program.mode == "clip":
                rows.append(self.run(role, [item])[0].reshape(1, -1))
            else:  # stream / aggregate: a sequence stepped from zero state
                state, steps = self.zero_state(role), []
                for step_input in item:
                    out = self.run(role, [step_input, *state])
                    n_out = len(program.outputs)
                    steps.append(out[0].reshape(-1))
                    state = out[n_out:]
                rows.append(np.stack(steps))
        got = np.stack(rows)
        expected = np.asarray(expected, np.float32).reshape(got.shape)
        scale = float(np.abs(expected).max(initial=0.0))
        if own:
            tol = (1e-3 + 1e-2 * scale) if program.precision == "int8" else (1e-4 + 1e-5 * scale)
        else:
            tol = program.parity.tolerance if program.parity and program.parity.tolerance else 1e-3 + 1e-5 * scale
        diff = float(np.abs(got - expected).max())
        same_top1 = bool((got.argmax(-1) == expected.argmax(-1)).all())
        if diff > tol or (program.precision == "int8" and not same_top1):
            raise BundleError(f"bundle {self.bundle.source}: program {program.id!r} on {self.backend} does not "
                              f"reproduce its golden vectors: max|diff| {diff:.3g} > {tol:.3g} against {what}"
                              + ("" if same_top1 else ", top-1 differs"))
        return diff, tol, what

    # ---- lifetime ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.runners.clear()
        self.bundle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Model({self.manifest.name!r}, kind={self.kind}, backend={self.backend}, precision={self.precision}, "
                f"programs={[p.id for p in self.programs.values()]})")


def _roles(manifest: Manifest) -> tuple[str, ...]:
    if manifest.faster is None:
        return ("model",)
    return (*manifest.faster.roles, "aggregator")


def _program_for(manifest: Manifest, backend: str, precision: str, role: str, mode: str | None) -> Program | None:
    for p in manifest.programs:
        if (p.backend, p.precision, p.role) == (backend, precision, role) and (mode is None or p.mode == mode
                                                                                 or role != "model"):
            return p
    return None


def _candidates(manifest: Manifest, backend: str, precision: str | None) -> list[tuple[str, str]]:
    pairs = {(p.backend, p.precision) for p in manifest.programs}
    if precision is not None:
        pairs = {pp for pp in pairs if pp[1] == precision}
    if backend != "auto":
        pairs = {pp for pp in pairs if pp[0] == backend}
    return sorted(pairs, key=lambda pp: (PRECISION_ORDER.index(pp[1]), auto_rank(pp[0])))


def first_choice(manifest: Manifest, backend: str = "auto", precision: str | None = None) -> tuple[str, str] | None:
    """The (backend, precision) pair :func:`load` tries first on this host (its runtime installed; nothing is
    imported), or None when no pair's runtime is."""
    return next(((be, prec) for be, prec in _candidates(manifest, backend, precision) if is_available(be)), None)


def _open(path: str | Path) -> Bundle:
    """``Bundle(path)``, with any stray parsing exception of a malformed manifest reported as a BundleError (the
    runtime's contract: bad input raises typed errors; tests/test_runtime_fuzz.py)."""
    try:
        return Bundle(path)
    except SdkError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise BundleError(f"bundle {path}: manifest.json is malformed ({type(e).__name__}: {e})") from e


def load(path: str | Path | Bundle, backend: str = "auto", verify: bool = False, threads: int | None = None, *,
         precision: str | None = None, mode: str | None = None) -> Model:
    """Open a bundle and load the programs of one backend (see the module docstring for ``auto``).

    Args:
        path: a ``.vbundle`` directory, its zip, or an open :class:`Bundle`.
        backend: ``auto`` or a name of :data:`sdk.backends.table.BACKENDS`.
        verify: run the golden vectors through the loaded programs (:meth:`Model.verify`); raises
            :class:`BundleError` on a mismatch.
        threads: intra-op threads per runner (None = runtime default).
        precision: restrict to ``fp32`` / ``fp16`` / ``int8`` programs.
        mode: for a bundle with both, ``clip`` or ``stream`` programs (default: the first listed).
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if precision is not None and precision not in PRECISION_ORDER:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISION_ORDER)}")
    if mode is not None and mode not in ("clip", "stream"):
        raise ConfigError(f"mode must be clip or stream, got {mode!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    bundle = path if isinstance(path, Bundle) else _open(path)
    try:
        manifest = bundle.manifest
        candidates = _candidates(manifest, backend, precision)
        if not candidates:
            have = sorted({f"{p.backend} {p.precision}" for p in manifest.programs})
            raise BundleError(f"bundle {bundle.source} has no {'' if backend == 'auto' else backend + ' '}"
                              f"{precision or ''} programs (it has: {', '.join(have)})".replace("  ", " "))
        skipped: list[str] = []
        for be, prec in candidates:
            programs = {role: _program_for(manifest, be, prec, role, mode) for role in _roles(manifest)}
            if any(p is None for p in programs.values()):
                skipped.append(f"{be} {prec}: not every program role ({', '.join(programs)}) in mode {mode}")
                continue
            if not is_available(be):
                skipped.append(f"{be} {prec}: the {be} runtime is not available on this host")
                if backend != "auto":
                    raise BackendUnavailableError(
                        f"the {be} runtime is not available on this host ({platform.system()}); "
                        f"install it, or use backend='auto' (bundle {bundle.source})")
                continue
            try:
                runners = {role: load_runner(be, bundle.path(p), threads=threads) for role, p in programs.items()}
            except (BackendUnavailableError, ConfigError) as e:
                if backend != "auto":
                    raise
                skipped.append(f"{be} {prec}: {e}")
                continue
            model = Model(bundle, be, prec, runners, programs, threads, skipped)
            if verify:
                model.verify()
            return model
        raise BackendUnavailableError(f"no program of bundle {bundle.source} can run here: " + "; ".join(skipped))
    except SdkError:
        if not isinstance(path, Bundle):
            bundle.close()
        raise
