"""The inspect page of a bundle (``python -m sdk inspect B``; ``python -m converters inspect`` prints the same)."""
from __future__ import annotations

import json
from pathlib import Path

from sdk.bundle import Bundle
from sdk.classifier import default_window
from sdk.manifest import Manifest

__all__ = ["add_inspect_command", "describe", "inspect"]


def describe(bundle: Bundle) -> str:
    """A readable page about a bundle: what it classifies, what to feed it, its programs and their parity."""
    m = bundle.manifest
    pre = m.input.preprocess
    lines = [
        (f"bundle   {bundle.source}  (schema {m.schema_version}, created {m.created or '?'}, "
         f"by {m.producer.get('package', '?')} {m.producer.get('version', '')})"),
        f"name     {m.name}",
        f"labels   {len(m.labels)}: {', '.join(m.labels[:8])}{', ...' if len(m.labels) > 8 else ''}",
        (f"sampler  {m.sampler.kind}, {m.sampler.frames} frames"
         + (f" of a {m.sampler.of}-frame grid" if m.sampler.of else "")),
        _clip_line(m),
        (f"input    {m.input.dtype} RGB in [{m.input.value_range[0]:g}, {m.input.value_range[1]:g}], {pre.layout}; "
         f"runtime: resize shorter side to {pre.resize_to}, centre-crop {pre.size}x{pre.size} "
         f"({pre.interpolation}); in the program: {', '.join(m.input.in_program) or 'nothing'} "
         f"(scale {pre.scale:g}, mean {list(pre.mean)}, std {list(pre.std)})"),
        (f"pixels   video files read with the {pre.conversion} conversion, as in training"
         + (" (the camera frames' path: what a device's camera gives)" if pre.conversion == "camera" else
            " (libswscale's RGB)") + "; --conversion overrides it"),
    ]
    if m.faster is not None:
        f = m.faster
        lines += ["", (f"FASTER   schedule {f.schedule} (pattern {', '.join(f.pattern)}), segments of "
                       f"{f.segment_frames} frames, trained on {f.segments} segments per video, aggregator "
                       f"{f.aggregator}")]
        if f.gate is not None:
            lines.append(f"  gate      {f.gate.kind}: the expensive model runs where the score exceeds "
                         f"{f.gate.threshold:.4g} (fired on {f.gate.fire_rate:.0%} of training segments; "
                         "gate_threshold / --gate-threshold overrides it)")
        for role, cm in f.clip_models.items():
            cpre = cm.input.preprocess
            lines.append(f"  {role:<9} sampler {cm.sampler.kind}, {cm.sampler.frames} frames; input {cpre.size}x"
                         f"{cpre.size} (resize {cpre.resize_to}); GMACs per clip {cm.gmacs_per_clip}")
    lines += ["", "programs"]
    for p in m.programs:
        par = p.parity
        if par is None:
            status = "no parity record"
        elif par.status == "verified":
            status = (f"verified vs {par.reference}: max|diff| {par.max_abs_diff:.2e}, top-1 agreement "
                      f"{par.top1_agreement:.3f} on {par.clips} clips")
            if par.vs_fp32:
                status += f"; vs fp32 top-1 agreement {par.vs_fp32['top1_agreement']:.3f}"
        else:
            status = f"NOT VERIFIED: {par.reason}"
        io = ", ".join(f"{t.name}{list(t.shape)}:{t.dtype}" for t in p.inputs)
        out = ", ".join(f"{t.name}{list(t.shape)}:{t.dtype}" for t in p.outputs)
        role = "" if p.role == "model" else f"  [{p.role}]"
        lines += [f"  {p.id}{role}  {p.file}  {p.size_bytes / 1e6:.2f} MB  sha256 {p.sha256[:12]}...",
                  f"      ({io}) -> ({out})" + (f"  + {len(p.state)} state tensors" if p.state else ""),
                  f"      parity: {status}"]
        nd = p.details.get("non_delegated_ops")
        if nd is not None:
            lines.append(f"      outside the XNNPACK delegate: {nd or 'nothing'}")
        if p.details.get("quantization") and p.precision == "int8":
            lines.append(f"      quantization: {p.details['quantization']}")
    prov = m.provenance
    ckpt = prov.get("checkpoint") or {}
    ds = prov.get("dataset") or {}
    metrics = prov.get("metrics") or {}
    lines += ["", "provenance",
              f"  checkpoint {ckpt.get('name') or ckpt.get('path')} (sha256 {str(ckpt.get('sha256'))[:12]})",
              f"  dataset    preset {ds.get('preset')}, seed {ds.get('seed')}",
              f"  GMACs      {prov.get('gmacs_per_clip')} per clip",
              f"  metrics    {json.dumps(metrics) if metrics else 'none recorded'}"]
    return "\n".join(lines)


def _clip_line(m: Manifest) -> str:
    """What the bundle says about its training videos, and what a stream's default window makes of it."""
    if m.faster is not None:
        return f"clip     {'trained on ' + str(m.clip) if m.clip else 'not recorded'} (streams run in FASTER segments)"
    if m.clip is not None:
        return (f"clip     trained on {m.clip}: a stream's default window spans one (its seconds at the source's "
                "frame rate, else its frames)")
    return (f"clip     not recorded (exported before manifest schema 1.2): streams default to "
            f"{default_window(m).frames}-frame windows; pass --window")


def inspect(path: str | Path, *, verify: bool = False, as_json: bool = False) -> str:
    """What ``python -m sdk inspect`` / ``python -m converters inspect`` print: the manifest as JSON or the
    readable page, after checking every file's sha256 when ``verify``."""
    with Bundle(path) as bundle:
        if verify:
            bundle.verify()
        if as_json:
            return json.dumps(bundle.manifest.to_dict(), indent=2)
        return describe(bundle) + ("\n\nall file hashes verified" if verify else "")


def add_inspect_command(subparsers) -> None:
    """The ``inspect`` subcommand, the same in ``python -m sdk`` and ``python -m converters``."""
    i = subparsers.add_parser("inspect", help="print a bundle readably")
    i.add_argument("bundle", type=Path, help="NAME.vbundle directory or its zip")
    i.add_argument("--verify", action="store_true", help="check every file's sha256")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.set_defaults(func=_inspect_command)


def _inspect_command(args) -> int:
    print(inspect(args.bundle, verify=args.verify, as_json=args.json))
    return 0
