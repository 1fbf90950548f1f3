"""The real round trainer: one SFL training round of any scheme, in PyTorch, on one global model.

Every scheme trains ONE global set of weights (the :class:`~sfl_env.models.SplitModel`). A round copies
the client-side blocks to K clients, trains for ``local_iters`` iterations, and writes the result back,
so the cut may change every round without re-initialising anything: blocks that move to the clients
are copied from the global (server) weights, blocks that move to the server are the FedAvg of the
client copies. Optimizer state (SGD's momentum buffers, Adam's moments) lives next to its block's
weights and travels the same way.

The K client copies are trained together: their weights are stacked along a leading client dimension
and the client blocks run under ``torch.func.vmap``, so one local iteration is a single forward and a
single backward pass whatever K is.

What a round does is read from the scheme's declaration (:mod:`sfl_env.schemes`): its server topology
(a shared server, per-client server copies, a sequential server, or none), whether clients
back-propagate the aggregate of the smashed-data gradients, and whether client blocks are FedAvg'd or
kept per client. Its cost is the pricer's (:class:`~sfl_env.pricing.RoundPricer`), not the trainer's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ..config import SFLConfig
from ..errors import ConfigError
from ..memory import eval_batch_size, training_memory
from ..models import SplitModel, build_model
from ..profiling import ModelProfile, profile_model
from ..schemes import Server, get_scheme
from .protocol import RoundOutcome
from .gradient_aggregation import AggregateSmashedGradient

Tensors = dict[str, torch.Tensor]
_ADAM_BETA2 = 0.999
_ADAM_EPSILON = 1e-8


class BatchSampler(Protocol):
    """Yields, per local iteration, a (K, b) tensor of train-set indices (row k: client k's batch)."""

    def next_batch(self) -> torch.Tensor: ...


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
    client_optimizer_state: Tensors = field(default_factory=dict)
    server_optimizer_state: Tensors = field(default_factory=dict)


class RealTrainer:
    """Trains one scheme round by round on one global model; ``run_round(cut)`` is one training round.

    The training options (scheme, batch size, local iterations, SGD, aggregation weights, gradient
    aggregation, evaluation period, device) come from ``config``, validated once; the data and the
    sampler are given, one client size per client.
    """

    def __init__(
        self,
        config: SFLConfig,
        model: SplitModel,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        client_sizes: np.ndarray,
        sampler: BatchSampler,
        *,
        eval_batch_size: int = 2048,
        bits_per_value: int = 32,
        generator: torch.Generator | None = None,
    ) -> None:
        sizes = np.asarray(client_sizes, dtype=np.float64)
        if sizes.shape != (config.num_clients,) or np.any(sizes <= 0):
            raise ConfigError(f"client_sizes={client_sizes!r} is invalid; allowed: {config.num_clients} positive "
                              "sizes, one per client (num_clients)")
        self.config = config
        self.scheme = get_scheme(config.scheme)
        self.device = torch.device(config.device)
        self.model = model.to(self.device).train()
        self.profile: ModelProfile = profile_model(model, bits_per_value)
        self.x_train, self.y_train = x_train.to(self.device), y_train.to(self.device)
        self.x_test, self.y_test = x_test.to(self.device), y_test.to(self.device)
        self.sampler = sampler
        self.num_clients = config.num_clients
        self.lr, self.momentum, self.weight_decay = config.lr, config.momentum, config.weight_decay
        self.eval_batch_size = eval_batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        uniform = np.full(len(sizes), 1 / len(sizes))
        alpha = sizes / sizes.sum() if config.aggregation_weights == "data_size" else uniform
        dtype = next(model.parameters()).dtype  # the trainer follows the model: float32, or float64
        self.alpha = torch.tensor(alpha, dtype=dtype, device=self.device)
        self.round_index = 0
        self.cut: int | None = None
        self.optimizer = config.optimizer
        self._steps = 0  # local iterations so far: Adam's bias correction
        # Optimizer state per parameter: SGD's momentum buffer, or Adam's two moments stacked on a last axis.
        self._optimizer_state: Tensors = {}
        if config.optimizer == "adam":
            self._optimizer_state = {n: torch.zeros(*p.shape, 2, dtype=p.dtype, device=p.device)
                                     for n, p in model.named_parameters()}
        elif config.momentum > 0:
            self._optimizer_state = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        # Client blocks kept per client across rounds, for a scheme that does not FedAvg them (psl).
        self._client_copies: tuple[Tensors, Tensors, Tensors] | None = None
        self._segments: dict[tuple[int, int], _Segment] = {}

    # ------------------------------------------------------------------ public API

    def run_round(self, cut: int) -> RoundOutcome:
        """Trains one round at ``cut`` (blocks ``[0, cut)`` on the clients) and returns what it taught."""
        self.resplit(cut)
        cut = self.cut
        self.round_index += 1

        state = self._begin_round(cut)
        losses, diverged = [], False
        for _ in range(self.config.local_iters):
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
        if not diverged and self.round_index % self.config.eval_every == 0:
            acc, test_loss = self.test_metrics()
        return RoundOutcome(
            round_index=self.round_index,
            train_loss=float(np.mean(losses)) if losses and not diverged else math.nan,
            test_accuracy=acc,
            test_loss=test_loss,
            diverged=diverged,
        )

    def resplit(self, cut: int) -> None:
        """Moves the cut to ``cut`` without training (the ledger prices it: ``ledger.migration_bits``).

        The global model's function never changes. Schemes that FedAvg every round already hold the
        averaged client blocks on the server. A scheme that keeps per-client copies (psl) gets the blocks
        that move to the clients broadcast from the server copy, and averages those that move to the
        server. A scheme that does not split trains every block whatever ``cut`` says.
        """
        cut = self.model.check_cut(cut) if self.scheme.splits_model else self.model.num_blocks
        previous, self.cut = self.cut, cut
        if self._client_copies is not None:
            self._resplit_client_copies(previous, cut)

    def optimizer_state(self) -> Tensors:
        """The global optimizer state, one tensor per parameter: SGD's momentum buffer (none without
        momentum), or Adam's first and second moments stacked on a last axis of size 2."""
        return dict(self._optimizer_state)

    @torch.no_grad()
    def test_metrics(self) -> tuple[float, float]:
        """Test accuracy and mean test loss of the global model (a language model: over every predicted
        token, i.e. next-token accuracy and the loss whose exponential is the perplexity)."""
        self.model.eval()
        correct, loss_sum = 0, 0.0
        for start in range(0, len(self.y_test), self.eval_batch_size):
            x = self.x_test[start : start + self.eval_batch_size]
            y = self.y_test[start : start + self.eval_batch_size]
            logits = self.model(x)
            loss_sum += per_sample_loss(logits, y).sum().item()
            correct += (logits.argmax(-1) == y).sum().item()
        self.model.train()
        n = self.y_test.numel()
        return correct / n, loss_sum / len(self.y_test)

    # ------------------------------------------------------------------ one local iteration

    def _iteration(self, state: _RoundState, cut: int, x: torch.Tensor, y: torch.Tensor) -> float:
        self._steps += 1
        if self.scheme.server is Server.SEQUENTIAL:
            client_losses = self._sequential_server(state, cut, x, y)
        else:
            ratio = self.scheme.gradient_aggregation_ratio(self.config.gradient_aggregation)
            client_losses = self._forward_backward(state, cut, x, y, ratio, self.scheme.server)
            self._optimizer_step(state.server, state.server_optimizer_state)
        self._optimizer_step(state.client, state.client_optimizer_state)
        return float(client_losses.detach() @ self.alpha)

    def _forward_backward(
        self, state: _RoundState, cut: int, x: torch.Tensor, y: torch.Tensor, ratio: float, server_kind: Server
    ) -> torch.Tensor:
        """One forward and backward pass of all K clients on a server of ``server_kind`` (not the
        sequential one); clients back-propagate ``ratio`` * aggregate + (1 - ratio) * own gradient.
        Leaves the gradients in ``state``."""
        K, b = y.shape[:2]
        smashed = vmap(_stacked_forward(self._segment(0, cut).module))(state.client, state.client_buffers, x)
        server = self._segment(cut, self.model.num_blocks)
        shared = server_kind is Server.SHARED
        if server_kind is Server.NONE:
            logits = smashed
        elif server_kind is Server.PER_CLIENT:
            logits = vmap(_stacked_forward(server.module))(state.server, state.server_buffers, smashed)
        else:  # one shared server model on all K smashed batches
            smashed = AggregateSmashedGradient.apply(smashed, self.alpha, ratio)
            logits = functional_call(server.module, (state.server, state.server_buffers), (smashed.flatten(0, 1),))
        client_losses = per_sample_loss(logits, y, sample_dims=2).mean(1)
        # Independent copies (no server, per-client servers) each learn from their own loss; a shared
        # server from the alpha-weighted sum, whose smashed-data gradient is alpha_k G_k (undone at the cut).
        (client_losses @ self.alpha if shared else client_losses.sum()).backward()
        return client_losses

    def _sequential_server(self, state: _RoundState, cut: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sfl-v2: the server takes one SGD step per client, in a random order; own gradients go back."""
        smashed = vmap(_stacked_forward(self._segment(0, cut).module))(state.client, state.client_buffers, x)
        server = self._segment(cut, self.model.num_blocks)
        grads = torch.empty_like(smashed)
        losses = torch.empty(len(y), dtype=smashed.dtype, device=self.device)
        for k in torch.randperm(len(y), generator=self.generator).tolist():
            s_k = smashed[k].detach().requires_grad_()
            loss = per_sample_loss(functional_call(server.module, (state.server, state.server_buffers), (s_k,)),
                                   y[k]).mean()
            loss.backward()
            self._optimizer_step(state.server, state.server_optimizer_state)
            grads[k], losses[k] = s_k.grad, loss.detach()
        smashed.backward(grads)
        return losses

    @torch.no_grad()
    def _optimizer_step(self, params: Tensors, optimizer_state: Tensors) -> None:
        for name, p in params.items():
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay:
                grad = grad.add(p, alpha=self.weight_decay)
            if self.optimizer == "adam":  # Kingma and Ba (2015), with beta1 = momentum and beta2 = 0.999
                moments = optimizer_state[name]
                first, second = moments[..., 0], moments[..., 1]
                first.mul_(self.momentum).add_(grad, alpha=1 - self.momentum)
                second.mul_(_ADAM_BETA2).addcmul_(grad, grad, value=1 - _ADAM_BETA2)
                denominator = (second / (1 - _ADAM_BETA2**self._steps)).sqrt_().add_(_ADAM_EPSILON)
                grad = first / (1 - self.momentum**self._steps) / denominator
            elif self.momentum:
                buf = optimizer_state[name]
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

        if self._client_copies is not None:
            c_params, c_buffers, c_optimizer_state = (dict(d) for d in self._client_copies)
        else:
            c_params = {g: _stack(params[g], K) for g, _ in client.params}
            c_buffers = {g: _stack(buffers[g], K) for g, _ in client.buffers}
            c_optimizer_state = {g: _stack(self._optimizer_state[g], K) for g, _ in client.params
                                 if self._optimizer_state}
        state = _RoundState(
            client={local: c_params[g].detach().clone().requires_grad_() for g, local in client.params},
            client_buffers={local: c_buffers[g].clone() for g, local in client.buffers},
            server={}, server_buffers={},
        )
        state.client_optimizer_state.update({local: c_optimizer_state[g].clone() for g, local in client.params
                                             if c_optimizer_state})
        stack = K if self.scheme.server is Server.PER_CLIENT else None
        for g, local in server.params:
            state.server[local] = _copy(params[g], stack).requires_grad_()
            if self._optimizer_state:
                state.server_optimizer_state[local] = _copy(self._optimizer_state[g], stack)
        for g, local in server.buffers:
            state.server_buffers[local] = _copy(buffers[g], stack)
        return state

    @torch.no_grad()
    def _commit(self, state: _RoundState, cut: int) -> None:
        """Writes the round's weights back into the global model (FedAvg of stacked copies)."""
        client, server = self._segment(0, cut), self._segment(cut, self.model.num_blocks)
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        for seg, values, bufs, optimizer_state, stacked in (
            (client, state.client, state.client_buffers, state.client_optimizer_state, True),
            (server, state.server, state.server_buffers, state.server_optimizer_state,
             self.scheme.server is Server.PER_CLIENT),
        ):
            for g, local in seg.params:
                params[g].copy_(self._fedavg(values[local]) if stacked else values[local])
                if self._optimizer_state:
                    state_k = optimizer_state[local]
                    self._optimizer_state[g].copy_(self._fedavg(state_k) if stacked else state_k)
            for g, local in seg.buffers:
                buffers[g].copy_(self._fedavg(bufs[local]) if stacked else bufs[local])
        if not self.scheme.aggregates_client_models:
            self._client_copies = (
                {g: state.client[local].detach() for g, local in client.params},
                {g: state.client_buffers[local] for g, local in client.buffers},
                {g: state.client_optimizer_state[local] for g, local in client.params if self._optimizer_state},
            )

    def _fedavg(self, stacked: torch.Tensor) -> torch.Tensor:
        if not stacked.is_floating_point():  # e.g. BatchNorm's num_batches_tracked: equal on every client
            return stacked[0]
        return torch.tensordot(self.alpha.to(stacked.dtype), stacked, dims=1)

    def _resplit_client_copies(self, previous: int, cut: int) -> None:
        params, c_buffers, c_optimizer_state = self._client_copies
        moved = self._segment(min(previous, cut), max(previous, cut))
        globals_ = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        for store, names in ((params, moved.params), (c_buffers, moved.buffers), (c_optimizer_state, moved.params)):
            if store is c_optimizer_state and not self._optimizer_state:
                continue
            for g, _ in names:
                if cut > previous:  # server -> clients: broadcast the server copy
                    source = self._optimizer_state[g] if store is c_optimizer_state else globals_[g]
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


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, sample_dims: int = 1) -> torch.Tensor:
    """The cross-entropy of each sample, shaped like ``y``'s first ``sample_dims`` dimensions: ``y`` holds
    one label per sample, or T next tokens per sample (a language model), whose losses are averaged."""
    per_target = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return per_target.reshape(*y.shape[:sample_dims], -1).mean(-1)


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


def build_real_trainer(config: SFLConfig, seed: int = 0) -> RealTrainer:
    """The whole training system of ``config``: data, partition, model and trainer, all from ``seed``.

    One seed fans out into independent streams for the model's initial weights, the partition, the
    client batch sampler and the trainer's own randomness (sfl-v2's client order).
    """
    from ..data import ClientSampler, load_config_dataset, partition

    model_seed, partition_seed, sampler_seed, trainer_seed = (
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(4)
    )
    data = load_config_dataset(config)
    clients = partition(
        data.partition_labels, config.num_clients, config.partition, alpha=config.dirichlet_alpha,
        shards_per_client=config.shards_per_client, rng=np.random.default_rng(partition_seed),
    )
    sampler = ClientSampler(clients, config.batch_size, torch.Generator().manual_seed(sampler_seed))
    model = build_model(config.model, data.input_shape, data.num_classes, **config.model_options, seed=model_seed)
    memory = training_memory(config, data.input_shape, data.num_classes)
    return RealTrainer(
        config, model, data.x_train, data.y_train, data.x_test, data.y_test,
        np.array([len(c) for c in clients]), sampler, generator=torch.Generator().manual_seed(trainer_seed),
        eval_batch_size=eval_batch_size(memory),
    )
