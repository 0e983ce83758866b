"""Lower a model to ExecuTorch with the XNNPACK partitioner and report what did not go to the delegate.

Ops outside the delegate run on ExecuTorch's portable kernels (slow); a temporal op (TAM, temporal shift: made of
pad / slice / cat / reshape) there is a bug (docs/design.md, contract 1). The converters build on :func:`lower_to_xnnpack`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# Non-delegated ops that are expected and cheap: memory-format / dtype conversions of the program input and of scalar
# constants (e.g. the zeros that the TAM time shift concatenates, ``slice * 0``).
HARMLESS_OPS = frozenset({"dim_order_ops._to_dim_order_copy.default"})
# What the temporal modules are made of: any of these outside the delegate means a temporal op fell off the fast path.
TEMPORAL_OPS = frozenset({
    "aten.constant_pad_nd.default", "aten.slice_copy.Tensor", "aten.cat.default", "aten.view_copy.default",
    "aten.index_select.default", "aten.roll.default", "aten.fmod.Tensor", "aten.arange.start_step",
    "aten.select_copy.int", "aten.split_with_sizes_copy.default", "aten.convolution.default", "aten.add.Tensor",
    "aten.relu.default",
})


@dataclass
class LoweringReport:
    """Delegated subgraphs and the ops left on the portable path (name -> count)."""

    delegate_calls: int
    non_delegated: Counter = field(default_factory=Counter)

    @property
    def unexpected(self) -> Counter:
        return Counter({k: v for k, v in self.non_delegated.items() if k not in HARMLESS_OPS})

    @property
    def temporal_on_portable_path(self) -> list[str]:
        return sorted(k for k in self.non_delegated if k in TEMPORAL_OPS)

    def __str__(self) -> str:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.non_delegated.items())) or "none"
        return f"{self.delegate_calls} XNNPACK subgraph(s); not delegated: {ops}"


def _op_name(target: Any) -> str:
    name = getattr(target, "_name", None) or getattr(target, "__name__", str(target))
    overload = getattr(target, "_overloadname", None)
    if "::" in name:
        ns, op = name.split("::", 1)
        return f"{ns}.{op}" if "." in op else f"{ns}.{op}.{overload or 'default'}"
    return name


def lower_to_xnnpack(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> tuple[Any, LoweringReport]:
    """``torch.export`` (strict graph: a graph break fails here) -> XNNPACK lowering; returns the edge program manager
    (``.to_executorch()`` gives the ``.pte``) and the delegation report."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(model.eval(), example_inputs)
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    report = LoweringReport(0)
    for node in edge.exported_program().graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node.target)
        if name == "executorch_call_delegate":
            report.delegate_calls += 1
        elif name != "getitem":
            report.non_delegated[name] += 1
    return edge, report
