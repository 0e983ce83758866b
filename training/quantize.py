"""PT2E int8 quantization (XNNPACK scheme) of registry models: export, prepare (QAT or PTQ), calibrate, convert, save.

The flow, for ``training/qat.py`` and the converters::

    gm = prepare(model, example, qat=True)     # fake-quant graph, in training mode
    set_training(gm, True); ...train...; set_training(gm, False); ...evaluate with gm(clips)...
    int8 = convert(gm)                         # quantize/dequantize ops around int8 weights
    save_program(int8, example, "model.pt2", metadata)

PTQ is ``prepare(model, example, qat=False)`` -> :func:`calibrate` -> :func:`convert`.

Why these choices
-----------------
* **One quantizer:** XNNPACK's symmetric int8 config (per-channel weights by default), the one the ExecuTorch XNNPACK
  delegate executes; the converted graph lowers with :func:`converters.delegation.lower_to_xnnpack`. For QAT its fused
  fake quantization is swapped for the unfused one, which trains on the grid the int8 model uses (:func:`_unfused`).
* **Dynamic batch:** every export marks dim 0 dynamic (min 1), so QAT sees the smaller last batch of an epoch and the
  saved program runs at any batch size. ``torch.export`` specializes a size-1 dimension to the constant 1, so a batch-1
  example is repeated to batch 2 for tracing.
* **Exported graphs have no train/eval switch** (their ``.train()`` raises ``NotImplementedError``):
  :func:`set_training` rewrites the batch-norm and dropout ops in the graph instead, and also switches the QAT
  observers (see there). Every module returned here has ``.train()`` / ``.eval()`` bound to it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import types
from collections.abc import Iterable
from pathlib import Path

import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)
from torch import nn
from torch._dynamo.exc import UserError  # what torch.export raises when a dynamic dimension gets specialized
from torch.fx import GraphModule
from torchao.quantization.pt2e import (
    FakeQuantize,
    FusedMovingAvgObsFakeQuantize,
    disable_observer,
    enable_observer,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.quantizer import QuantizationSpec

from sdk.errors import ConfigError
from sdk.files import atomic_path

__all__ = [
    "calibrate",
    "convert",
    "export_model",
    "freeze_observers",
    "load_program",
    "make_quantizer",
    "prepare",
    "save_program",
    "set_training",
    "with_train_eval",
]

# Set on a prepared QAT module by freeze_observers: set_training(gm, True) then leaves the observers off.
_FROZEN_ATTR = "_quantize_observers_frozen"


def with_train_eval(gm: GraphModule) -> GraphModule:
    """Bind ``gm.train(mode)`` / ``gm.eval()`` to :func:`set_training` (an exported module's own ones raise), so that
    generic code -- ``lower_to_xnnpack``'s ``model.eval()``, a training loop -- handles it like any module."""
    gm.train = types.MethodType(lambda self, mode=True: set_training(self, mode), gm)
    gm.eval = types.MethodType(lambda self: set_training(self, False), gm)
    return gm


def _trace_example(example: torch.Tensor, dynamic_batch: bool) -> torch.Tensor:
    """A batch-1 example would specialize the batch to the constant 1 (0/1 specialization): trace with 2 instead."""
    if dynamic_batch and example.shape[0] == 1:
        return example.expand(2, *example.shape[1:]).contiguous()
    return example


def _export(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...],
            dynamic_batch: bool) -> torch.export.ExportedProgram:
    if isinstance(model, GraphModule):
        set_training(model, False)
    else:
        model.eval()
    if isinstance(example, tuple):  # several inputs (a streaming step): static shapes
        if dynamic_batch:
            raise ValueError("a dynamic batch needs a single example tensor; pass dynamic_batch=False")
        return torch.export.export(model, example)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    try:
        return torch.export.export(model, (_trace_example(example, dynamic_batch),), dynamic_shapes=dynamic_shapes)
    except UserError as e:
        if not dynamic_batch:
            raise
        raise RuntimeError(f"{type(model).__name__} does not export with a dynamic batch dimension (its code fixes the "
                           f"batch size); export with dynamic_batch=False for a fixed batch of {example.shape[0]}. "
                           f"torch.export said: {e}") from e


def export_model(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], *,
                 dynamic_batch: bool = True) -> GraphModule:
    """``torch.export`` ``model`` in eval mode on ``(example,)``, batch dimension dynamic (min 1) when asked; a tuple
    ``example`` is several inputs with static shapes (``dynamic_batch=False``).

    Puts ``model`` in eval mode. Also accepts an already exported/converted ``GraphModule`` (re-export, e.g. to save).
    """
    return with_train_eval(_export(model, example, dynamic_batch).module())


def _unfused(spec: QuantizationSpec | None) -> QuantizationSpec | None:
    """The same spec with ``FakeQuantize`` instead of ``FusedMovingAvgObsFakeQuantize`` (same observer and kwargs).

    The fused kernel computes its own scales, which are not the ones ``convert_pt2e`` later takes from the observer
    (measured with torch 2.13 / torchao 0.18): per-channel symmetric weight scales 0.4 % smaller (amax / 127.5 instead
    of amax / 127) and the config's ``eps`` floor ignored (tiny ranges, e.g. a TAM tap near zero, 4x finer). QAT then
    trains on another grid than the int8 model runs on. ``FakeQuantize`` takes its scales from the observer itself.
    """
    if spec is None or spec.observer_or_fake_quant_ctr.p.func is not FusedMovingAvgObsFakeQuantize:
        return spec
    kwargs = spec.observer_or_fake_quant_ctr.p.keywords
    return dataclasses.replace(spec, observer_or_fake_quant_ctr=FakeQuantize.with_args(**kwargs))


def make_quantizer(*, qat: bool, per_channel: bool = True) -> XNNPACKQuantizer:
    """XNNPACK's symmetric int8 scheme on every supported op (activations per tensor, weights per channel); for QAT
    with unfused fake quantization (:func:`_unfused`)."""
    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat)
    if qat:  # a new config: the one above is cached (lru_cache) and shared
        config = dataclasses.replace(config, input_activation=_unfused(config.input_activation),
                                     output_activation=_unfused(config.output_activation),
                                     weight=_unfused(config.weight), bias=_unfused(config.bias))
    return XNNPACKQuantizer().set_global(config)


def prepare(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...], *, qat: bool,
            per_channel: bool = True, dynamic_batch: bool = True) -> GraphModule:
    """Export (dynamic batch) and insert fake-quant modules (``qat``) or observers (PTQ).

    QAT: ``prepare_qat_pt2e`` folds every conv + batch-norm pair into one fake-quantized conv that still normalises
    with batch statistics in training mode (the PT2E QAT fusion), so the returned module -- already in training mode --
    trains with an optimizer over ``gm.parameters()``. PTQ: the returned module is in eval mode, ready for
    :func:`calibrate`. The converters prepare programs with fixed shapes and several inputs (``dynamic_batch=False``,
    a tuple ``example``).
    """
    gm = export_model(model, example, dynamic_batch=dynamic_batch)
    quantizer = make_quantizer(qat=qat, per_channel=per_channel)
    gm = prepare_qat_pt2e(gm, quantizer) if qat else prepare_pt2e(gm, quantizer)
    return set_training(with_train_eval(gm), qat)


def set_training(gm: GraphModule, training: bool, batch_norm: bool = True) -> GraphModule:
    """The ``.train()`` / ``.eval()`` of an exported (prepared) module.

    * Batch norm: training mode normalises with batch statistics and updates the running ones; eval mode uses the
      running statistics (the graph's batch-norm ops are rewritten). Dropout likewise. ``batch_norm=False`` keeps
      batch norm and dropout in eval mode while training (fine-tuning a model whose statistics are final, e.g. one
      with a frozen trunk); the observers still follow ``training``.
    * QAT fake-quant observers: on in training mode (the quantization ranges follow the activations and weights), off
      in eval mode, so that evaluating between epochs does not move the ranges it measures (with the observers off the
      fake quantization uses the last ranges: the int8 model's). After :func:`freeze_observers` they stay off.
    * PTQ observers have no switch: every forward of a PTQ-prepared module observes; :func:`calibrate`, then convert.
    * ``gm.training`` (and every submodule's flag) is set too, for code that reads it; the graph does not.
    """
    if training:
        (move_exported_model_to_train if batch_norm else move_exported_model_to_eval)(gm)
        if not getattr(gm, _FROZEN_ATTR, False):
            gm.apply(enable_observer)
    else:
        move_exported_model_to_eval(gm)
        gm.apply(disable_observer)
    for module in gm.modules():
        module.training = training
    return gm


def freeze_observers(gm: GraphModule) -> GraphModule:
    """Freeze the QAT quantization ranges for the rest of training (the "disable observer after N epochs" recipe).

    The fake quantization keeps running with the current ranges, so the last epochs fine-tune the weights against the
    exact grid the int8 model will use. Batch-norm statistics are not frozen (PT2E has no per-op switch for that).
    """
    setattr(gm, _FROZEN_ATTR, True)
    gm.apply(disable_observer)
    return gm


def calibrate(gm: GraphModule, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]], *,
              max_batches: int | None = None, progress: bool = False) -> int:
    """Run clips (or input tuples) through ``gm`` in eval mode to record activation ranges; returns the number of
    clips seen (the first input's leading dimension, summed).

    Works on PTQ modules and on QAT modules (e.g. to start QAT from calibrated ranges): the fake-quant observers are
    on during calibration and off afterwards (eval mode).
    """
    set_training(gm, False)
    gm.apply(enable_observer)
    if progress:
        from training.progress import progress as report

        batches = report(batches, total=max_batches, desc="calibrate", unit="batch")
    seen = 0
    with torch.no_grad():
        for i, clips in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            inputs = clips if isinstance(clips, tuple) else (clips,)
            gm(*inputs)
            seen += inputs[0].shape[0]
    gm.apply(disable_observer)
    return seen


def convert(gm: GraphModule) -> GraphModule:
    """The int8 model: eval mode, then ``convert_pt2e`` (quantize/dequantize ops around int8 weights) on a copy --
    ``convert_pt2e`` rewrites its argument in place, and the fake-quant model stays the reference to compare with."""
    set_training(gm, False)
    return with_train_eval(convert_pt2e(copy.deepcopy(gm)))


def save_program(gm: GraphModule, example: torch.Tensor, path: str | os.PathLike, metadata: dict) -> Path:
    """Re-export ``gm`` (dynamic batch) and ``torch.export.save`` it to ``path`` (``.pt2``), with ``metadata``
    (config, labels, sampler, preprocess, metrics, quantization) in the JSON sidecar ``path.with_suffix(".json")``.

    Both files are written atomically (:func:`sdk.files.atomic_path`): an interrupted save never leaves a truncated
    program behind.
    """
    path = Path(path)
    program = _export(gm, example, dynamic_batch=True)
    text = json.dumps(metadata, indent=2, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # keeps the .pt2 suffix torch.export.save wants
        torch.export.save(program, tmp)
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_bytes(text)
    return path


def load_program(path: str | os.PathLike) -> tuple[GraphModule, dict]:
    """The module and metadata written by :func:`save_program`; ``ConfigError`` naming the file if either is missing
    or unreadable."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    for file in (path, sidecar):
        if not file.is_file():
            raise ConfigError(f"{file} does not exist (save_program writes the program {path.name} and its metadata "
                              f"{sidecar.name} side by side)")
    try:
        metadata = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read the metadata {sidecar}: {e}") from e
    if not isinstance(metadata, dict):
        raise ConfigError(f"the metadata {sidecar} is not a JSON object")
    try:
        program = torch.export.load(path)
    except Exception as e:  # torch.export.load raises many types on a corrupt archive
        raise ConfigError(f"cannot load the program {path}: {type(e).__name__}: {e}") from e
    return with_train_eval(program.module()), metadata
