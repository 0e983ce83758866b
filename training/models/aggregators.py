"""Video-level aggregators of FASTER: FAST-GRU, and plain GRU / LSTM / average pooling to compare it with.

FASTER (Zhu et al., "FASTER Recurrent Networks for Efficient Video Classification", AAAI 2020, arXiv 1906.04226)
treats a video as a sequence of clips: an expensive clip model runs on some clips, a cheap one on the others, and a
recurrent unit aggregates their features, one clip per step, into the video prediction. Every aggregator here has one
interface (:class:`Aggregator`) built for streaming on a device (docs/design.md, contracts 1 and 2):

* ``state_specs(batch)`` names and shapes the state tensors (rank <= 4); ``initial_state(batch)`` is all zeros, and
  resetting a stream means zeros again;
* ``step(features, *state) -> (logits, *new_state)`` is a pure function of its inputs (eval mode): no hidden module
  state, no in-place op on an input, no data-dependent control flow; only 1x1 convs / linear layers, BN, sigmoid,
  tanh, relu, mul, add, sub, div, cat and a spatial mean, so that it lowers entirely to XNNPACK;
* ``forward(sequence)`` (training) runs ``step`` over ``(B, L, ...)`` clip features from zero state and returns the
  logits after the last clip, or after every clip (``all_steps=True``);
* a classifier head, dropout + linear, on the aggregated feature (``forward_head``, ``pre_logits`` as in timm).

:class:`AggregatorStep` wraps ``step`` as the module to export; :func:`create_aggregator` builds one by name
(``average``, ``gru``, ``lstm``, ``fast_gru``, ``fast_gru_pooled``).

FAST-GRU as implemented
-----------------------
Clip features ``x_t`` (``C_x`` channels), hidden state ``h_{t-1}`` (``C_h`` channels), both ``H x W`` maps; ``*`` is a
1x1 convolution, ``[.,.]`` channel concatenation, ``⊙`` the element-wise product::

    x̄_t     = ReLU(BN(W_x * x_t))                          reduce the input to C_r = C_h / reduction channels
    h̄_{t-1} = ReLU(BN(W_h * h_{t-1}))                      reduce the hidden state likewise
    r_t     = σ(W_r * [x̄_t, h̄_{t-1}] + b_r)                reset gate, expanded back to C_h channels
    z_t     = σ(W_z * [x̄_t, h̄_{t-1}] + b_z)                update gate, expanded back to C_h channels
    ñ_t     = ReLU(BN(W_nx * x̄_t + r_t ⊙ (W_nh * h̄_{t-1} + b_n)))   candidate: ReLU instead of tanh
    h_t     = (1 - z_t) ⊙ ñ_t + z_t ⊙ h_{t-1}

The video logits are ``fc(dropout(mean_{H,W} h_t))``. Taken from the paper (as summarised in docs/design.md): the 1x1
reductions of input and hidden state with BN + ReLU, gates computed from the concatenation of the reduced tensors and
expanded back to the hidden width, the ReLU candidate instead of tanh, hidden states that keep the feature maps'
layout. The text of the paper's section 3 could not be read where this was written (only its abstract and
introduction were reachable), so the details below are this project's choices: check them against the paper's
equations before calling this the reference implementation. Where we had to choose:

1. **No temporal axis.** The paper's clip features (3D CNNs) keep ``T x H x W`` and its convolutions are 1x1x1. A
   ``(B, C, T, H, W)`` state would make the step program's boundary rank 5, which contract 1 forbids, so the clip
   models here pool time away before the aggregator: FAST-GRU keeps the spatial maps ``(B, C, H, W)`` only.
2. **Reduction ratio** ``C_r = C_h // reduction`` with ``reduction=4`` by default (at least 1 channel), the same for
   input and hidden state; ``hidden_channels`` defaults to the input width, so ``h_t`` lives in the clip feature space.
3. **Gate expansion.** Each gate is one 1x1 conv from the ``2 C_r`` concatenated channels straight to ``C_h`` channels
   (with bias, no BN: a sigmoid follows). ``r_t`` and ``z_t`` are two convs rather than one conv split in two, which
   is the same function but keeps a split op (not delegated by XNNPACK) out of the program.
4. **Candidate.** The reset gate lives at the hidden width, so it gates the hidden branch *after* that branch is
   expanded back (``r_t ⊙ (W_nh * h̄_{t-1} + b_n)``, the "reset after" form of cuDNN / ``torch.nn.GRUCell``); both
   branches start from the reduced tensors (cheap: no ``C_h x C_h`` conv anywhere). One BN on their sum, then ReLU.
   Convs followed by BN have no bias.
5. **Update rule and gate sense** as in ``torch.nn.GRUCell``: ``z_t = 1`` keeps the old state.
6. **BN statistics** are shared across time steps (one BN per projection, including the first step, whose hidden
   state is zero); in eval mode BN is a fixed per-channel affine map and ``step`` is pure. In training mode ``step``
   updates the BN running statistics like any BN layer.
7. **Initial hidden state** is zeros (contract 2), not a learned tensor; note that ``h̄_0 = ReLU(BN(0))`` is the BN
   shift, not zero. Since the candidate is a ReLU output and ``h_t`` a convex combination, ``h_t >= 0`` throughout.
8. **Prediction** from the last hidden state, spatially averaged, then dropout (0.5 by default) and a linear layer;
   ``step`` emits these logits after every clip so that a streaming runtime can read a prediction at any time.
   Parameters use PyTorch's default initialisation (no gate-bias tricks).

**Pooled variant** (``spatial=False``, builder ``fast_gru_pooled``): the same class and equations on pooled vectors
``(B, C)``, with linear layers and BatchNorm1d in place of the 1x1 convs and BatchNorm2d (a 1x1 conv on a 1x1 map *is*
a linear layer); features ``(B, C_x)``, hidden state ``(B, C_h)``. For small devices: its cost does not grow with
``H x W``.

Comparison aggregators (pooled vectors ``(B, C)``): :class:`GRUAggregator` and :class:`LSTMAggregator` are hand-written
cells with exactly the equations of ``torch.nn.GRUCell`` / ``torch.nn.LSTMCell`` (their weights map one to one; a
hand-written cell exports everywhere, ``nn.GRU`` does not), computing each gate from ``[x_t, h_{t-1}]`` with its own
linear layer (no split op); :class:`AverageAggregator` keeps the running mean and the step count as explicit state.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sdk.errors import ConfigError

__all__ = [
    "AGGREGATORS", "Aggregator", "AggregatorStep", "AverageAggregator", "FastGRU", "GRUAggregator", "LSTMAggregator",
    "StateSpec", "create_aggregator", "list_aggregators",
]

State = tuple[torch.Tensor, ...]
StateSpec = list[tuple[str, tuple[int, ...]]]


class Aggregator(nn.Module):
    """Clip features -> video logits, one clip per :meth:`step`, with all recurrent state explicit.

    Subclasses set ``spatial`` (True: features are maps ``(B, C, H, W)``; False: vectors ``(B, C)``), implement
    :meth:`state_specs`, :meth:`update` (features, state -> new state) and :meth:`readout` (state -> aggregated feature
    ``(B, num_features)``), and call ``_init_head``.
    """

    spatial: bool = False
    in_channels: int
    num_features: int
    num_classes: int
    feature_size: tuple[int, int] | None = None
    dropout: nn.Dropout
    fc: nn.Linear

    def _init_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        self.num_features, self.num_classes = num_features, num_classes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    # ---- subclass API ----------------------------------------------------------------------------------------------
    def state_specs(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> StateSpec:
        """``[(name, shape)]`` of the state tensors in ``step`` order (``feature_size``: the maps' ``(H, W)`` for
        spatial aggregators, the one given at construction by default)."""
        raise NotImplementedError

    def update(self, features: torch.Tensor, *state: torch.Tensor) -> State:
        """One clip's features and the state -> the new state."""
        raise NotImplementedError

    def readout(self, *state: torch.Tensor) -> torch.Tensor:
        """The aggregated feature ``(B, num_features)`` that the head classifies."""
        raise NotImplementedError

    # ---- common -----------------------------------------------------------------------------------------------------
    def feature_shape(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """Shape of one step's ``features`` input."""
        if not self.spatial:
            return (batch, self.in_channels)
        return (batch, self.in_channels, *self._size(feature_size))

    def initial_state(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> State:
        """Zeros: the start of a video, and what resetting a stream means."""
        p = self.fc.weight
        return tuple(torch.zeros(shape, dtype=p.dtype, device=p.device)
                     for _, shape in self.state_specs(batch, feature_size))

    def example_inputs(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> State:
        """``(features, *state)`` for export: random features, zero state."""
        p = self.fc.weight
        features = torch.randn(self.feature_shape(batch, feature_size), dtype=p.dtype, device=p.device)
        return (features, *self.initial_state(batch, feature_size))

    def forward_head(self, pooled: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return pooled if pre_logits else self.fc(self.dropout(pooled))

    def step(self, features: torch.Tensor, *state: torch.Tensor) -> State:
        """``(features, *state) -> (logits (B, num_classes), *new_state)``: the streaming program."""
        expected = len(self.state_specs(1, (1, 1)))
        if len(state) != expected:
            raise ValueError(f"{type(self).__name__}.step expects {expected} state tensor(s), got {len(state)}")
        new_state = self.update(features, *state)
        return (self.forward_head(self.readout(*new_state)), *new_state)

    def _run(self, sequence: torch.Tensor) -> tuple[list[torch.Tensor], State]:
        rank = 5 if self.spatial else 3
        if sequence.dim() != rank:
            layout = "(B, L, C, H, W)" if self.spatial else "(B, L, C)"
            raise ValueError(f"{type(self).__name__} expects a sequence of clip features {layout}, "
                             f"got shape {tuple(sequence.shape)}")
        size = tuple(sequence.shape[3:]) if self.spatial else None
        state = self.initial_state(sequence.shape[0], size)
        logits = []
        for t in range(sequence.shape[1]):
            out, *state = self.step(sequence[:, t], *state)
            logits.append(out)
        return logits, tuple(state)

    def forward_features(self, sequence: torch.Tensor) -> torch.Tensor:
        """The aggregated feature after the last clip, ``(B, num_features)`` (pre-logits, e.g. for distillation)."""
        _, state = self._run(sequence)
        return self.readout(*state)

    def forward(self, sequence: torch.Tensor, all_steps: bool = False) -> torch.Tensor:
        """Clip features ``(B, L, C[, H, W])`` -> video logits ``(B, K)``, or ``(B, L, K)`` after every clip."""
        logits, _ = self._run(sequence)
        return torch.stack(logits, 1) if all_steps else logits[-1]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes).to(self.fc.weight)

    def _size(self, feature_size: tuple[int, int] | None) -> tuple[int, int]:
        size = feature_size if feature_size is not None else self.feature_size
        if size is None:
            raise ValueError(f"{type(self).__name__} consumes feature maps: give their (height, width)")
        return (int(size[0]), int(size[1]))


class AggregatorStep(nn.Module):
    """The exportable step program of an aggregator: ``forward(features, *state) -> (logits, *new_state)``."""

    def __init__(self, aggregator: Aggregator):
        super().__init__()
        self.aggregator = aggregator

    def forward(self, features: torch.Tensor, *state: torch.Tensor) -> State:
        return tuple(self.aggregator.step(features, *state))


def _projection(in_channels: int, out_channels: int, spatial: bool, bias: bool) -> nn.Module:
    """A 1x1 conv on maps, a linear layer on vectors: the same map per position."""
    if spatial:
        return nn.Conv2d(in_channels, out_channels, 1, bias=bias)
    return nn.Linear(in_channels, out_channels, bias=bias)


def _batch_norm(channels: int, spatial: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if spatial else nn.BatchNorm1d(channels)


class FastGRU(Aggregator):
    """The FAST-GRU of FASTER (equations and choices: module docstring).

    ``spatial=True``: features ``(B, in_channels, H, W)``, hidden state ``(B, hidden_channels, H, W)``;
    ``spatial=False`` (pooled variant): features ``(B, in_channels)``, hidden state ``(B, hidden_channels)``.
    ``feature_size`` is the ``(H, W)`` that :meth:`state_specs` and :meth:`example_inputs` use by default.
    """

    def __init__(self, in_channels: int, num_classes: int, *, hidden_channels: int | None = None, reduction: int = 4,
                 spatial: bool = True, feature_size: tuple[int, int] | None = (7, 7), dropout: float = 0.5):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        hidden = hidden_channels or in_channels
        reduced = max(1, hidden // reduction)
        self.spatial, self.in_channels = spatial, in_channels
        self.hidden_channels, self.reduced_channels = hidden, reduced
        self.feature_size = (int(feature_size[0]), int(feature_size[1])) if spatial and feature_size else None

        def reduce(channels: int) -> nn.Sequential:
            return nn.Sequential(_projection(channels, reduced, spatial, bias=False), _batch_norm(reduced, spatial),
                                 nn.ReLU())

        self.reduce_x = reduce(in_channels)                                       # x̄_t
        self.reduce_h = reduce(hidden)                                            # h̄_{t-1}
        self.reset_gate = _projection(2 * reduced, hidden, spatial, bias=True)    # W_r, b_r
        self.update_gate = _projection(2 * reduced, hidden, spatial, bias=True)   # W_z, b_z
        self.candidate_x = _projection(reduced, hidden, spatial, bias=False)      # W_nx
        self.candidate_h = _projection(reduced, hidden, spatial, bias=True)       # W_nh, b_n
        self.candidate_bn = _batch_norm(hidden, spatial)
        self._init_head(hidden, num_classes, dropout)

    def state_specs(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> StateSpec:
        if not self.spatial:
            return [("hidden", (batch, self.hidden_channels))]
        return [("hidden", (batch, self.hidden_channels, *self._size(feature_size)))]

    def update(self, features: torch.Tensor, *state: torch.Tensor) -> State:
        (h,) = state
        x_red, h_red = self.reduce_x(features), self.reduce_h(h)
        both = torch.cat([x_red, h_red], 1)
        r = torch.sigmoid(self.reset_gate(both))
        z = torch.sigmoid(self.update_gate(both))
        n = torch.relu(self.candidate_bn(self.candidate_x(x_red) + r * self.candidate_h(h_red)))
        return ((1 - z) * n + z * h,)

    def readout(self, *state: torch.Tensor) -> torch.Tensor:
        (h,) = state
        return h.mean((2, 3), keepdim=True).flatten(1) if self.spatial else h


class GRUAggregator(Aggregator):
    """A plain GRU over pooled clip features ``(B, C)``; the equations of ``torch.nn.GRUCell``::

        r = σ(W_r [x, h] + b_r)    z = σ(W_z [x, h] + b_z)
        n = tanh(W_nx x + b_nx + r ⊙ (W_nh h + b_nh))    h' = (1 - z) ⊙ n + z ⊙ h
    """

    def __init__(self, in_channels: int, num_classes: int, *, hidden_size: int | None = None, dropout: float = 0.5):
        super().__init__()
        hidden = hidden_size or in_channels
        self.in_channels, self.hidden_size = in_channels, hidden
        self.reset_gate = nn.Linear(in_channels + hidden, hidden)
        self.update_gate = nn.Linear(in_channels + hidden, hidden)
        self.candidate_x = nn.Linear(in_channels, hidden)
        self.candidate_h = nn.Linear(hidden, hidden)
        self._init_head(hidden, num_classes, dropout)

    def state_specs(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> StateSpec:
        return [("hidden", (batch, self.hidden_size))]

    def update(self, features: torch.Tensor, *state: torch.Tensor) -> State:
        (h,) = state
        both = torch.cat([features, h], 1)
        r = torch.sigmoid(self.reset_gate(both))
        z = torch.sigmoid(self.update_gate(both))
        n = torch.tanh(self.candidate_x(features) + r * self.candidate_h(h))
        return ((1 - z) * n + z * h,)

    def readout(self, *state: torch.Tensor) -> torch.Tensor:
        return state[0]


class LSTMAggregator(Aggregator):
    """A plain LSTM over pooled clip features ``(B, C)``; the equations of ``torch.nn.LSTMCell``::

        i, f, o = σ(W_{i,f,o} [x, h] + b_{i,f,o})    g = tanh(W_g [x, h] + b_g)
        c' = f ⊙ c + i ⊙ g    h' = o ⊙ tanh(c')

    State: ``hidden`` then ``cell``; the head reads ``h'``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, hidden_size: int | None = None, dropout: float = 0.5):
        super().__init__()
        hidden = hidden_size or in_channels
        self.in_channels, self.hidden_size = in_channels, hidden
        self.input_gate = nn.Linear(in_channels + hidden, hidden)
        self.forget_gate = nn.Linear(in_channels + hidden, hidden)
        self.cell_gate = nn.Linear(in_channels + hidden, hidden)
        self.output_gate = nn.Linear(in_channels + hidden, hidden)
        self._init_head(hidden, num_classes, dropout)

    def state_specs(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> StateSpec:
        return [("hidden", (batch, self.hidden_size)), ("cell", (batch, self.hidden_size))]

    def update(self, features: torch.Tensor, *state: torch.Tensor) -> State:
        h, c = state
        both = torch.cat([features, h], 1)
        i = torch.sigmoid(self.input_gate(both))
        f = torch.sigmoid(self.forget_gate(both))
        g = torch.tanh(self.cell_gate(both))
        o = torch.sigmoid(self.output_gate(both))
        c_new = f * c + i * g
        return (o * torch.tanh(c_new), c_new)

    def readout(self, *state: torch.Tensor) -> torch.Tensor:
        return state[0]


class AverageAggregator(Aggregator):
    """Average pooling of pooled clip features ``(B, C)`` over the clips seen so far (order-invariant control).

    State: the running ``mean`` ``(B, C)`` and the step ``count`` ``(B, 1)``; ``count' = count + 1``,
    ``mean' = mean + (x - mean) / count'``. A running mean rather than a running sum: it stays at the features' scale
    however long the video. Since the head is linear, this equals averaging the per-clip logits (eval mode).
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.5):
        super().__init__()
        self.in_channels = in_channels
        self._init_head(in_channels, num_classes, dropout)

    def state_specs(self, batch: int = 1, feature_size: tuple[int, int] | None = None) -> StateSpec:
        return [("mean", (batch, self.in_channels)), ("count", (batch, 1))]

    def update(self, features: torch.Tensor, *state: torch.Tensor) -> State:
        mean, count = state
        count_new = count + 1
        return (mean + (features - mean) / count_new, count_new)

    def readout(self, *state: torch.Tensor) -> torch.Tensor:
        return state[0]


# ---- registry --------------------------------------------------------------------------------------------------------
AGGREGATORS: dict[str, Callable[..., Aggregator]] = {}


def _register(fn: Callable[..., Aggregator]) -> Callable[..., Aggregator]:
    if fn.__name__ in AGGREGATORS:
        raise RuntimeError(f"aggregator {fn.__name__!r} is registered twice")
    AGGREGATORS[fn.__name__] = fn
    return fn


@_register
def average(*, in_channels: int, num_classes: int, dropout: float = 0.5) -> AverageAggregator:
    """Average pooling of pooled clip features (the order-invariant baseline)."""
    return AverageAggregator(in_channels, num_classes, dropout=dropout)


@_register
def gru(*, in_channels: int, num_classes: int, hidden_size: int | None = None, dropout: float = 0.5) -> GRUAggregator:
    """Plain GRU over pooled clip features (hidden size defaults to ``in_channels``)."""
    return GRUAggregator(in_channels, num_classes, hidden_size=hidden_size, dropout=dropout)


@_register
def lstm(*, in_channels: int, num_classes: int, hidden_size: int | None = None,
         dropout: float = 0.5) -> LSTMAggregator:
    """Plain LSTM over pooled clip features (hidden size defaults to ``in_channels``)."""
    return LSTMAggregator(in_channels, num_classes, hidden_size=hidden_size, dropout=dropout)


@_register
def fast_gru(*, in_channels: int, num_classes: int, hidden_channels: int | None = None, reduction: int = 4,
             feature_size: tuple[int, int] = (7, 7), dropout: float = 0.5) -> FastGRU:
    """FAST-GRU over clip feature maps ``(B, C, H, W)``; hidden state ``(B, hidden_channels, H, W)``."""
    return FastGRU(in_channels, num_classes, hidden_channels=hidden_channels, reduction=reduction, spatial=True,
                   feature_size=feature_size, dropout=dropout)


@_register
def fast_gru_pooled(*, in_channels: int, num_classes: int, hidden_channels: int | None = None, reduction: int = 4,
                    dropout: float = 0.5) -> FastGRU:
    """FAST-GRU over pooled clip features ``(B, C)`` (small devices); hidden state ``(B, hidden_channels)``."""
    return FastGRU(in_channels, num_classes, hidden_channels=hidden_channels, reduction=reduction, spatial=False,
                   feature_size=None, dropout=dropout)


def list_aggregators() -> list[str]:
    return sorted(AGGREGATORS)


def create_aggregator(name: str, *, in_channels: int, num_classes: int, **kwargs) -> Aggregator:
    """Build the aggregator ``name`` for clip features of ``in_channels`` channels and ``num_classes`` classes."""
    if name not in AGGREGATORS:
        raise ConfigError(f"unknown aggregator {name!r}; available: {', '.join(list_aggregators())}")
    return AGGREGATORS[name](in_channels=in_channels, num_classes=num_classes, **kwargs)
