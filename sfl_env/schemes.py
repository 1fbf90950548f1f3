"""One training round of SFL-GA and the schemes it is compared with, in real PyTorch.

Every scheme trains ONE global set of weights (the :class:`~sfl_env.models.SplitModel`). A round copies
the client-side blocks to K clients, trains for ``local_iters`` iterations, and writes the result back,
so the cut may change every round without re-initialising anything: blocks that move to the clients
are copied from the global (server) weights, blocks that move to the server are the FedAvg of the
client copies. Momentum buffers live next to their block's weights and travel the same way.

The K client copies are trained together: their weights are stacked along a leading client dimension
and the client blocks run under ``torch.func.vmap``, so one local iteration is a single forward and a
single backward pass whatever K is.

Schemes (paper_spec.md 1.2 and 1.4):

``sfl-ga``
    Clients forward in parallel; one shared server model is trained on all K smashed batches with the
    loss ``sum_k alpha_k F_k``; the per-client smashed-data gradients ``G_k = dF_k/ds_k`` are aggregated
    into ``sum_k alpha_k G_k``, which is broadcast once; every client back-propagates that aggregate
    through its own blocks; client blocks are FedAvg'd at the end of the round. ``gradient_aggregation``
    (phi in [0, 1]) blends ``phi * aggregate + (1 - phi) * G_k``; phi = 0 is per-client SFL with a
    shared server.
``sfl-v1``
    SplitFed V1: K server copies trained in parallel, each on its own client's smashed data with the
    client's own gradient unicast back; client and server copies are FedAvg'd every round.
``sfl-v2``
    SplitFed V2: one server model that takes one SGD step per client, clients in a random order each
    iteration; own gradients unicast; client blocks FedAvg'd every round.
``psl``
    Parallel split learning: one shared server model (as in SFL-GA), own gradients unicast, and no
    client-model aggregation: each client keeps its own client-side blocks across rounds. The global
    model that is evaluated uses the average of the client copies.
``fl``
    FedAvg: every client trains the whole model; the cut is ignored (reported as ``num_blocks``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .models import SplitModel, build_model
from .profiling import ModelProfile, profile_model

if TYPE_CHECKING:
    from .config import SFLConfig

SCHEMES: tuple[str, ...] = ("sfl-ga", "sfl-v1", "sfl-v2", "psl", "fl")
AGGREGATION_WEIGHTS: tuple[str, ...] = ("data_size", "uniform")

Tensors = dict[str, torch.Tensor]


class BatchSampler(Protocol):
    """Yields, per local iteration, a (K, b) tensor of train-set indices (row k: client k's batch)."""

    def next_batch(self) -> torch.Tensor: ...


@dataclass(frozen=True)
class RoundResult:
    """What one round did: learning progress, per-phase work and every bit that crossed the air.

    Work is per client and per local iteration (all clients have the same batch size and cut); bits are
    round totals over all clients. A broadcast counts once on the downlink, a unicast once per client.
    """

    round_index: int
    scheme: str
    cut: int
    previous_cut: int | None
    num_clients: int
    local_iters: int
    batch_size: int
    train_loss: float
    test_accuracy: float  # NaN when the round was not evaluated
    test_loss: float
    diverged: bool
    client_forward_flops: float
    client_backward_flops: float
    server_flops: float  # forward + backward on one client's batch
    server_sequential: bool  # sfl-v2: the server processes the clients' batches one after another
    smashed_bits: float  # S(l): one client's smashed batch (= its gradient) in one iteration
    gradient_broadcast: bool  # True: one broadcast of the aggregate; False: K unicasts
    client_model_bits: float  # q(l) (the whole model Q for fl)
    smashed_bits_up: float
    gradient_bits_down: float
    model_bits_up: float
    model_bits_down: float
    migrated_bits_up: float
    migrated_bits_down: float

    @property
    def evaluated(self) -> bool:
        return not math.isnan(self.test_accuracy)

    @property
    def bits_up(self) -> float:
        return self.smashed_bits_up + self.model_bits_up + self.migrated_bits_up

    @property
    def bits_down(self) -> float:
        return self.gradient_bits_down + self.model_bits_down + self.migrated_bits_down


class _AggregateSmashedGradient(torch.autograd.Function):
    """Identity on the stacked smashed data (K, b, ...); replaces its gradient by the broadcast aggregate.

    The server loss is ``sum_k alpha_k F_k``, so the gradient arriving for client k is ``alpha_k G_k``:
    their sum over k is the aggregate, and dividing by ``alpha_k`` recovers the client's own ``G_k``.
    """

    @staticmethod
    def forward(ctx, smashed: torch.Tensor, weights: torch.Tensor, ratio: float) -> torch.Tensor:
        ctx.save_for_backward(weights)
        ctx.ratio = ratio
        return smashed.view_as(smashed)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weights,) = ctx.saved_tensors
        return aggregate_smashed_gradients(grad, weights, ctx.ratio), None, None


def aggregate_smashed_gradients(weighted: torch.Tensor, weights: torch.Tensor, ratio: float) -> torch.Tensor:
    """What each client back-propagates, from the server's ``alpha_k G_k`` stacked along dim 0.

    ``ratio`` 1 gives every client the aggregate ``sum_k alpha_k G_k``; 0 gives client k its own ``G_k``.
    """
    aggregate = weighted.sum(0, keepdim=True).expand_as(weighted)
    if ratio == 1.0:
        return aggregate
    own = weighted / weights.view(-1, *([1] * (weighted.dim() - 1)))
    if ratio == 0.0:
        return own
    return ratio * aggregate + (1.0 - ratio) * own


@dataclass
class _Segment:
    """Blocks ``[start, stop)`` as one module, with their global parameter and buffer names."""

    module: nn.Module
    params: list[tuple[str, str]]  # (global name, local name)
    buffers: list[tuple[str, str]]


@dataclass
class _RoundState:
    """The tensors one round trains: stacked (K, ...) on the client side, shared or stacked on the server."""

    client: Tensors
    client_buffers: Tensors
    server: Tensors
    server_buffers: Tensors
    client_momentum: Tensors = field(default_factory=dict)
    server_momentum: Tensors = field(default_factory=dict)


class SchemeTrainer:
    """Trains one scheme round by round on one global model; ``run_round(cut)`` is one training round."""

    def __init__(
        self,
        model: SplitModel,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        client_sizes: np.ndarray,
        sampler: BatchSampler,
        *,
        scheme: str = "sfl-ga",
        batch_size: int = 32,
        local_iters: int = 5,
        lr: float = 0.05,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        aggregation_weights: str = "data_size",
        gradient_aggregation: float = 1.0,
        eval_every: int = 1,
        eval_batch_size: int = 2048,
        bits_per_value: int = 32,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme={scheme!r} is unknown; allowed: {', '.join(SCHEMES)}")
        if aggregation_weights not in AGGREGATION_WEIGHTS:
            raise ValueError(
                f"aggregation_weights={aggregation_weights!r} is unknown; allowed: {', '.join(AGGREGATION_WEIGHTS)}"
            )
        if not 0.0 <= gradient_aggregation <= 1.0:
            raise ValueError(f"gradient_aggregation={gradient_aggregation!r} is out of range; allowed: [0, 1]")
        sizes = np.asarray(client_sizes, dtype=np.float64)
        if sizes.ndim != 1 or len(sizes) < 1 or np.any(sizes <= 0):
            raise ValueError(f"client_sizes must be positive, one per client; got {client_sizes!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).train()
        self.profile: ModelProfile = profile_model(model, bits_per_value)
        self.x_train, self.y_train = x_train.to(self.device), y_train.to(self.device)
        self.x_test, self.y_test = x_test.to(self.device), y_test.to(self.device)
        self.sampler = sampler
        self.scheme = scheme
        self.num_clients = len(sizes)
        self.batch_size = batch_size
        self.local_iters = local_iters
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.gradient_aggregation = float(gradient_aggregation)
        self.eval_every = eval_every
        self.eval_batch_size = eval_batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        alpha = sizes / sizes.sum() if aggregation_weights == "data_size" else np.full(len(sizes), 1 / len(sizes))
        self.alpha = torch.tensor(alpha, dtype=torch.float32, device=self.device)
        self.round_index = 0
        self.cut: int | None = None
        self._momentum: Tensors = {}
        if momentum > 0:
            self._momentum = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        self._psl_clients: tuple[Tensors, Tensors, Tensors] | None = None  # psl: per-client copies
        self._segments: dict[tuple[int, int], _Segment] = {}

    # ------------------------------------------------------------------ public API

    def run_round(self, cut: int) -> RoundResult:
        """Trains one round at ``cut`` (blocks ``[0, cut)`` on the clients) and returns what it did."""
        previous = self.cut
        migrated_up, migrated_down = self.resplit(cut)
        cut = self.cut
        self.round_index += 1

        state = self._begin_round(cut)
        losses, diverged = [], False
        for _ in range(self.local_iters):
            idx = self.sampler.next_batch().to(self.device)
            loss = self._iteration(state, cut, self.x_train[idx], self.y_train[idx])
            if not math.isfinite(loss):
                diverged = True
                break
            losses.append(loss)
        diverged = diverged or not all(torch.isfinite(t).all() for t in _all_tensors(state))
        if not diverged:
            self._commit(state, cut)

        acc = test_loss = math.nan
        if not diverged and self.round_index % self.eval_every == 0:
            acc, test_loss = self.evaluate()
        return RoundResult(
            round_index=self.round_index,
            scheme=self.scheme,
            cut=cut,
            previous_cut=previous,
            train_loss=float(np.mean(losses)) if losses and not diverged else math.nan,
            test_accuracy=acc,
            test_loss=test_loss,
            diverged=diverged,
            migrated_bits_up=migrated_up,
            migrated_bits_down=migrated_down,
            **round_ledger(self.profile, self.scheme, cut, self.num_clients, self.local_iters, self.batch_size,
                           self.gradient_aggregation),
        )

    def resplit(self, cut: int) -> tuple[float, float]:
        """Moves the cut to ``cut`` without training; returns the (uplink, downlink) bits that costs.

        The global model's function never changes. Schemes that FedAvg every round already hold the
        averaged client blocks on the server, so only a deeper cut costs traffic: the extra blocks are
        broadcast. PSL keeps per-client copies: blocks that move to the server are uploaded by every
        client and averaged, blocks that move to the clients are broadcast from the server copy.
        """
        cut = self.model.num_blocks if self.scheme == "fl" else self.model.check_cut(cut)
        previous, self.cut = self.cut, cut
        if self.scheme == "psl" and self._psl_clients is not None:
            self._psl_resplit(previous, cut)
        return migration_bits(self.profile, self.scheme, previous, cut, self.num_clients)

    def optimizer_state(self) -> Tensors:
        """The global momentum buffers, one per parameter (empty without momentum)."""
        return dict(self._momentum)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Test accuracy and mean loss of the global model."""
        self.model.eval()
        correct, loss_sum = 0, 0.0
        for start in range(0, len(self.y_test), self.eval_batch_size):
            x = self.x_test[start : start + self.eval_batch_size]
            y = self.y_test[start : start + self.eval_batch_size]
            logits = self.model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
        self.model.train()
        n = len(self.y_test)
        return correct / n, loss_sum / n

    # ------------------------------------------------------------------ one local iteration

    def _iteration(self, state: _RoundState, cut: int, x: torch.Tensor, y: torch.Tensor) -> float:
        if self.scheme == "sfl-v2":
            client_losses = self._sequential_server(state, cut, x, y)
        else:
            ratio = self.gradient_aggregation if self.scheme == "sfl-ga" else 0.0
            client_losses = self._forward_backward(state, cut, x, y, ratio, self.scheme)
            self._sgd_step(state.server, state.server_momentum)
        self._sgd_step(state.client, state.client_momentum)
        return float(client_losses.detach() @ self.alpha)

    def _forward_backward(
        self, state: _RoundState, cut: int, x: torch.Tensor, y: torch.Tensor, ratio: float, scheme: str
    ) -> torch.Tensor:
        """One forward and backward pass of all K clients as ``scheme`` does it; leaves the gradients in
        ``state``."""
        K, b = y.shape
        smashed = vmap(_stacked_forward(self._segment(0, cut).module))(state.client, state.client_buffers, x)
        server = self._segment(cut, self.model.num_blocks)
        if scheme == "fl":
            logits = smashed
        elif scheme == "sfl-v1":
            logits = vmap(_stacked_forward(server.module))(state.server, state.server_buffers, smashed)
        else:  # sfl-ga, psl: one shared server model on all K smashed batches
            smashed = _AggregateSmashedGradient.apply(smashed, self.alpha, ratio)
            logits = functional_call(server.module, (state.server, state.server_buffers), (smashed.flatten(0, 1),))
        per_sample = F.cross_entropy(logits.reshape(K * b, -1), y.reshape(-1), reduction="none")
        client_losses = per_sample.view(K, b).mean(1)
        # Independent copies (fl, sfl-v1) each learn from their own loss; a shared server from the
        # alpha-weighted sum, whose smashed-data gradient is alpha_k G_k (undone at the cut).
        shared = scheme in ("sfl-ga", "psl")
        (client_losses @ self.alpha if shared else client_losses.sum()).backward()
        return client_losses

    def client_gradient(self, cut: int, batch: torch.Tensor, ratio: float) -> Tensors:
        """The FedAvg'd client-side gradient of one SFL-GA iteration on ``batch`` (K, b), at the current
        weights, when clients back-propagate ``ratio`` * aggregate + (1 - ratio) * own gradient.
        Nothing is updated: this measures what gradient aggregation does to the client blocks. Needs a
        scheme with one shared server model (sfl-ga or psl)."""
        if self.scheme not in ("sfl-ga", "psl"):
            raise ValueError(f"client_gradient needs scheme 'sfl-ga' or 'psl' (one shared server); got {self.scheme!r}")
        cut = self.model.check_cut(cut)
        state = self._begin_round(cut)
        batch = batch.to(self.device)
        self._forward_backward(state, cut, self.x_train[batch], self.y_train[batch], ratio, "sfl-ga")
        client = self._segment(0, cut)
        return {g: self._fedavg(state.client[local].grad) for g, local in client.params}

    def _sequential_server(self, state: _RoundState, cut: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sfl-v2: the server takes one SGD step per client, in a random order; own gradients go back."""
        smashed = vmap(_stacked_forward(self._segment(0, cut).module))(state.client, state.client_buffers, x)
        server = self._segment(cut, self.model.num_blocks)
        grads = torch.empty_like(smashed)
        losses = torch.empty(len(y), device=self.device)
        for k in torch.randperm(len(y), generator=self.generator).tolist():
            s_k = smashed[k].detach().requires_grad_()
            loss = F.cross_entropy(functional_call(server.module, (state.server, state.server_buffers), (s_k,)), y[k])
            loss.backward()
            self._sgd_step(state.server, state.server_momentum)
            grads[k], losses[k] = s_k.grad, loss.detach()
        smashed.backward(grads)
        return losses

    @torch.no_grad()
    def _sgd_step(self, params: Tensors, momentum: Tensors) -> None:
        for name, p in params.items():
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay:
                grad = grad.add(p, alpha=self.weight_decay)
            if self.momentum:
                buf = momentum[name]
                buf.mul_(self.momentum).add_(grad)
                grad = buf
            p.sub_(grad, alpha=self.lr)
            p.grad = None

    # ------------------------------------------------------------------ round set-up and write-back

    def _begin_round(self, cut: int) -> _RoundState:
        K, L = self.num_clients, self.model.num_blocks
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        client, server = self._segment(0, cut), self._segment(cut, L)

        if self.scheme == "psl" and self._psl_clients is not None:
            c_params, c_buffers, c_momentum = (dict(d) for d in self._psl_clients)
        else:
            c_params = {g: _stack(params[g], K) for g, _ in client.params}
            c_buffers = {g: _stack(buffers[g], K) for g, _ in client.buffers}
            c_momentum = {g: _stack(self._momentum[g], K) for g, _ in client.params if self._momentum}
        state = _RoundState(
            client={local: c_params[g].detach().clone().requires_grad_() for g, local in client.params},
            client_buffers={local: c_buffers[g].clone() for g, local in client.buffers},
            server={}, server_buffers={},
        )
        state.client_momentum.update({local: c_momentum[g].clone() for g, local in client.params if c_momentum})
        stack = K if self.scheme == "sfl-v1" else None
        for g, local in server.params:
            state.server[local] = _copy(params[g], stack).requires_grad_()
            if self._momentum:
                state.server_momentum[local] = _copy(self._momentum[g], stack)
        for g, local in server.buffers:
            state.server_buffers[local] = _copy(buffers[g], stack)
        return state

    @torch.no_grad()
    def _commit(self, state: _RoundState, cut: int) -> None:
        """Writes the round's weights back into the global model (FedAvg of stacked copies)."""
        client, server = self._segment(0, cut), self._segment(cut, self.model.num_blocks)
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        for seg, values, bufs, momentum, stacked in (
            (client, state.client, state.client_buffers, state.client_momentum, True),
            (server, state.server, state.server_buffers, state.server_momentum, self.scheme == "sfl-v1"),
        ):
            for g, local in seg.params:
                params[g].copy_(self._fedavg(values[local]) if stacked else values[local])
                if self._momentum:
                    m = momentum[local]
                    self._momentum[g].copy_(self._fedavg(m) if stacked else m)
            for g, local in seg.buffers:
                buffers[g].copy_(self._fedavg(bufs[local]) if stacked else bufs[local])
        if self.scheme == "psl":
            self._psl_clients = (
                {g: state.client[local].detach() for g, local in client.params},
                {g: state.client_buffers[local] for g, local in client.buffers},
                {g: state.client_momentum[local] for g, local in client.params if self._momentum},
            )

    def _fedavg(self, stacked: torch.Tensor) -> torch.Tensor:
        if not stacked.is_floating_point():  # e.g. BatchNorm's num_batches_tracked: equal on every client
            return stacked[0]
        return torch.tensordot(self.alpha.to(stacked.dtype), stacked, dims=1)

    def _psl_resplit(self, previous: int, cut: int) -> None:
        params, c_buffers, c_momentum = self._psl_clients
        moved = self._segment(min(previous, cut), max(previous, cut))
        globals_ = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        for store, names in ((params, moved.params), (c_buffers, moved.buffers), (c_momentum, moved.params)):
            if store is c_momentum and not self._momentum:
                continue
            for g, _ in names:
                if cut > previous:  # server -> clients: broadcast the server copy
                    source = self._momentum[g] if store is c_momentum else globals_[g]
                    store[g] = _stack(source.detach(), self.num_clients)
                else:  # clients -> server: the global copy already is their FedAvg
                    store.pop(g)

    # ------------------------------------------------------------------ helpers

    def _segment(self, start: int, stop: int) -> _Segment:
        key = (start, stop)
        if key not in self._segments:
            module = nn.Sequential(*self.model.blocks[start:stop])
            local = {id(p): n for n, p in module.named_parameters()}
            local_buf = {id(b): n for n, b in module.named_buffers()}
            self._segments[key] = _Segment(
                module,
                [(g, local[id(p)]) for g, p in self.model.named_parameters() if id(p) in local],
                [(g, local_buf[id(b)]) for g, b in self.model.named_buffers() if id(b) in local_buf],
            )
        return self._segments[key]


def round_ledger(
    profile: ModelProfile, scheme: str, cut: int, num_clients: int, local_iters: int, batch_size: int,
    gradient_aggregation: float = 1.0,
) -> dict[str, float | int | bool]:
    """The work and traffic fields of a :class:`RoundResult` (paper_spec.md 1.4), from the profile alone."""
    p, K, I, b = profile, num_clients, local_iters, batch_size
    fl = scheme == "fl"
    S = 0.0 if fl else p.smashed_bits(cut, b)
    q = p.model_bits if fl else p.client_model_bits(cut)
    broadcast = scheme == "sfl-ga" and gradient_aggregation == 1.0
    aggregates_models = scheme != "psl"
    return {
        "num_clients": K,
        "local_iters": I,
        "batch_size": b,
        "client_forward_flops": b * p.client_forward_flops(cut),
        "client_backward_flops": b * p.client_backward_flops(cut),
        "server_flops": 0.0 if fl else b * p.server_flops(cut),
        "server_sequential": scheme == "sfl-v2",
        "smashed_bits": S,
        "gradient_broadcast": broadcast,
        "client_model_bits": q,
        "smashed_bits_up": K * I * S,
        "gradient_bits_down": (1 if broadcast else K) * I * S,
        "model_bits_up": K * q if aggregates_models else 0.0,
        "model_bits_down": q if aggregates_models else 0.0,
    }


def migration_bits(
    profile: ModelProfile, scheme: str, previous: int | None, cut: int, num_clients: int
) -> tuple[float, float]:
    """(uplink, downlink) bits of moving the cut from ``previous`` to ``cut`` (see ``SchemeTrainer.resplit``)."""
    if previous is None or previous == cut or scheme == "fl":
        return 0.0, 0.0
    if cut > previous:
        return 0.0, profile.blocks_bits(previous, cut)
    if scheme == "psl":
        return num_clients * profile.blocks_bits(cut, previous), 0.0
    return 0.0, 0.0


def _stacked_forward(module: nn.Module) -> Callable:
    def forward(params: Tensors, buffers: Tensors, x: torch.Tensor) -> torch.Tensor:
        return functional_call(module, (params, buffers), (x,))

    return forward


def _stack(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.detach().unsqueeze(0).expand(k, *t.shape).clone()


def _copy(t: torch.Tensor, stack: int | None) -> torch.Tensor:
    return t.detach().clone() if stack is None else _stack(t, stack)


def _all_tensors(state: _RoundState):
    yield from state.client.values()
    yield from state.server.values()


def build_trainer(config: SFLConfig, seed: int = 0) -> SchemeTrainer:
    """The whole training system of ``config``: data, partition, model and trainer, all from ``seed``.

    One seed fans out into independent streams for the model's initial weights, the partition, the
    client batch sampler and the trainer's own randomness (sfl-v2's client order).
    """
    from .data import ClientSampler, load_dataset, partition

    model_seed, partition_seed, sampler_seed, trainer_seed = (
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(4)
    )
    data = load_dataset(config.dataset, config.data_dir, num_train=config.num_train, num_test=config.num_test)
    clients = partition(
        data.y_train.numpy(), config.num_clients, config.partition, alpha=config.dirichlet_alpha,
        shards_per_client=config.shards_per_client, rng=np.random.default_rng(partition_seed),
    )
    sampler = ClientSampler(clients, config.batch_size, torch.Generator().manual_seed(sampler_seed))
    model = build_model(config.model, data.input_shape, data.num_classes, width=config.model_width, seed=model_seed)
    return SchemeTrainer(
        model, data.x_train, data.y_train, data.x_test, data.y_test,
        np.array([len(c) for c in clients]), sampler,
        scheme=config.scheme, batch_size=config.batch_size, local_iters=config.local_iters, lr=config.lr,
        momentum=config.momentum, weight_decay=config.weight_decay,
        aggregation_weights=config.aggregation_weights, gradient_aggregation=config.gradient_aggregation,
        eval_every=config.eval_every, device=config.device,
        generator=torch.Generator().manual_seed(trainer_seed),
    )
