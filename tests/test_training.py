"""The real round trainer, every scheme: the algebra of gradient aggregation, re-splitting, the ledger it reports."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfl_env.config import LANGUAGE_MODELS, MODELS, SFLConfig
from sfl_env.ledger import round_cost
from sfl_env.errors import ConfigError
from sfl_env.models import build_model
from sfl_env.profiling import profile_model
from sfl_env.schemes import SCHEMES, get_scheme
from sfl_env.training.gradient_aggregation import aggregate_smashed_gradients
from sfl_env.training.real import RealTrainer

N_TRAIN, SHAPE = 400, (1, 8, 8)


def synthetic_data(seed=0, dtype=torch.float32):
    """A learnable task: one prototype image per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(10, *SHAPE, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (N_TRAIN,), generator=g)
    return (prototypes[y] + 0.5 * torch.randn(N_TRAIN, *SHAPE, generator=g)).to(dtype), y


class RandomSampler:
    """Client k draws from its own contiguous slice of the training set."""

    def __init__(self, num_clients, batch_size, seed=0):
        self.slices = np.array_split(np.arange(N_TRAIN), num_clients)
        self.b, self.g = batch_size, torch.Generator().manual_seed(seed)

    def next_batch(self):
        return torch.stack(
            [torch.as_tensor(s)[torch.randint(len(s), (self.b,), generator=self.g)] for s in self.slices]
        )


class SameBatchSampler:
    """Every client gets the same batch."""

    def __init__(self, num_clients, batch_size, seed=0):
        self.k, self.b, self.g = num_clients, batch_size, torch.Generator().manual_seed(seed)

    def next_batch(self):
        return torch.randint(N_TRAIN, (self.b,), generator=self.g).expand(self.k, self.b)


def make_trainer(scheme="sfl-ga", model="cnn", num_clients=4, batch_size=8, sampler=None, sizes=None,
                 model_seed=0, data_seed=0, dtype=torch.float32, **kwargs):
    """A trainer on the synthetic task; ``dtype=torch.float64`` for tests that compare two computations of
    the same maths (see :func:`assert_same`)."""
    width = 0.125 if model in ("vgg11", "resnet18") else 1.0
    net = build_model(model, SHAPE, 10, width=width, seed=model_seed).to(dtype)
    x, y = synthetic_data(data_seed, dtype)
    sampler = sampler or RandomSampler(num_clients, batch_size)
    sizes = np.full(num_clients, 100.0) if sizes is None else sizes
    config = SFLConfig(scheme=scheme, dataset="digits", model=model, num_clients=num_clients, batch_size=batch_size,
                       **({"local_iters": 2, "lr": 0.05, "momentum": 0.0} | kwargs))
    return RealTrainer(config, net, x, y, x[:64], y[:64], sizes, sampler, generator=torch.Generator().manual_seed(0))


def weights(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


F64 = torch.float64
F64_TOLERANCE = {"rtol": 1e-9, "atol": 1e-12}  # two computations of the same maths, in float64


def assert_same(a, b, exact=True):
    """``exact``: bit-identical, for one code path run twice on one machine. Otherwise the same maths computed
    two ways (vmapped or not, reduced in another order): compared in float64, where the kernels' last-bit
    differences on any CPU stay orders of magnitude below the tolerance (in float32 they do not)."""
    a, b = list(a), list(b)
    assert len(a) == len(b)
    for pa, pb in zip(a, b):
        if exact:
            assert torch.equal(pa, pb)
        else:
            assert pa.dtype == pb.dtype == F64, "compare two computations of the same maths in float64"
            torch.testing.assert_close(pa, pb, **F64_TOLERANCE)


# ---------------------------------------------------------------- gradient aggregation


def test_aggregation_function_blends_own_and_aggregate():
    g = torch.Generator().manual_seed(0)
    own = torch.randn(3, 5, 4, generator=g)
    alpha = torch.tensor([0.5, 0.3, 0.2])
    weighted = alpha.view(3, 1, 1) * own
    aggregate = (alpha.view(3, 1, 1) * own).sum(0)
    full = aggregate_smashed_gradients(weighted, alpha, 1.0)
    for k in range(3):
        assert torch.equal(full[k], aggregate)
    torch.testing.assert_close(aggregate_smashed_gradients(weighted, alpha, 0.0), own)
    torch.testing.assert_close(aggregate_smashed_gradients(weighted, alpha, 0.25), 0.25 * aggregate + 0.75 * own)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_one_client_sfl_ga_equals_sfl(cut):
    """With K = 1 the aggregate is the client's own gradient: SFL-GA is exactly per-client SFL."""
    ga = make_trainer("sfl-ga", num_clients=1, local_iters=1, dtype=F64)
    psl = make_trainer("psl", num_clients=1, local_iters=1, dtype=F64)
    v1 = make_trainer("sfl-v1", num_clients=1, local_iters=1, dtype=F64)
    for t in (ga, psl, v1):
        t.run_round(cut)
    assert_same(weights(ga), weights(psl), exact=True)
    assert_same(weights(ga), weights(v1), exact=False)  # V1 runs its server under vmap: same maths


def test_identical_batches_make_the_aggregate_each_clients_own_gradient():
    """All clients hold the same weights and batch, so every G_k equals the aggregate."""
    kwargs = dict(num_clients=3, sizes=np.array([1.0, 2.0, 3.0]), local_iters=1, dtype=F64)
    full = make_trainer("sfl-ga", sampler=SameBatchSampler(3, 8), **kwargs)
    none = make_trainer("sfl-ga", sampler=SameBatchSampler(3, 8), gradient_aggregation=0.0, **kwargs)
    full.run_round(2)
    none.run_round(2)
    assert_same(weights(full), weights(none), exact=False)


def test_aggregation_changes_training_when_clients_differ():
    full, none = make_trainer("sfl-ga"), make_trainer("sfl-ga", gradient_aggregation=0.0)
    full.run_round(3)
    none.run_round(3)
    client_block = zip(full.model.blocks[0].parameters(), none.model.blocks[0].parameters())
    assert not all(torch.allclose(a, b) for a, b in client_block)


def test_sfl_ga_matches_a_hand_written_reference_round():
    """One SFL-GA iteration written out with plain autograd, client by client."""
    K, b, cut = 3, 6, 2
    sizes = np.array([10.0, 30.0, 60.0])
    sampler = RandomSampler(K, b, seed=5)
    trainer = make_trainer("sfl-ga", num_clients=K, batch_size=b, sizes=sizes, local_iters=1,
                           sampler=sampler, lr=0.1, dtype=F64)
    reference = build_model("cnn", SHAPE, 10, seed=0).to(F64)
    batch = RandomSampler(K, b, seed=5).next_batch()
    x, y = synthetic_data(dtype=F64)
    alpha = torch.tensor(sizes / sizes.sum(), dtype=F64)

    clients = [[p.detach().clone().requires_grad_() for p in reference.blocks[:cut].parameters()] for _ in range(K)]
    server = list(reference.blocks[cut:].parameters())
    smashed, grads = [], []
    for k in range(K):
        s = torch.func.functional_call(
            torch.nn.Sequential(*reference.blocks[:cut]),
            dict(zip([n for n, _ in torch.nn.Sequential(*reference.blocks[:cut]).named_parameters()], clients[k])),
            (x[batch[k]],),
        )
        smashed.append(s)
    leaves = [s.detach().requires_grad_() for s in smashed]
    loss = sum(alpha[k] * F.cross_entropy(reference.forward_range(leaves[k], cut, 4), y[batch[k]]) for k in range(K))
    loss.backward()
    g_bar = sum(leaf.grad for leaf in leaves)  # leaf.grad = alpha_k G_k
    with torch.no_grad():
        for p in server:
            p -= 0.1 * p.grad
    for k in range(K):
        smashed[k].backward(g_bar)
    with torch.no_grad():
        averaged = [sum(alpha[k] * (clients[k][i] - 0.1 * clients[k][i].grad) for k in range(K))
                    for i in range(len(clients[0]))]
    trainer.run_round(cut)
    expected = averaged + [p.detach() for p in server]
    assert_same(weights(trainer), expected, exact=False)


# ---------------------------------------------------------------- the baselines


def test_fedavg_one_step_iid_equals_centralised_sgd():
    K, b = 4, 8
    trainer = make_trainer("fl", num_clients=K, batch_size=b, local_iters=1, aggregation_weights="uniform",
                           sampler=RandomSampler(K, b, seed=3), dtype=F64)
    batch = RandomSampler(K, b, seed=3).next_batch().reshape(-1)
    central = build_model("cnn", SHAPE, 10, seed=0).to(F64)
    x, y = synthetic_data(dtype=F64)
    F.cross_entropy(central(x[batch]), y[batch]).backward()
    with torch.no_grad():
        expected = [p - 0.05 * p.grad for p in central.parameters()]
    trainer.run_round(1)
    assert_same(weights(trainer), expected, exact=False)


def test_sfl_v1_is_fedavg_in_disguise():
    """K server copies trained on their own client's data and averaged every round: the FL update."""
    v1, fl = make_trainer("sfl-v1", dtype=F64), make_trainer("fl", dtype=F64)
    for _ in range(2):
        v1.run_round(2)
        fl.run_round(2)
    assert_same(weights(v1), weights(fl), exact=False)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cut_matters_says_whether_the_cut_changes_learning(scheme):
    """Calibration records one cut for a scheme whose learning cannot depend on it (Scheme.cut_matters)."""
    shallow, deep = make_trainer(scheme, dtype=F64), make_trainer(scheme, dtype=F64)
    for _ in range(2):
        shallow.run_round(1)
        deep.run_round(3)
    same = all(torch.allclose(a, b, **F64_TOLERANCE) for a, b in zip(weights(shallow), weights(deep)))
    assert same == (not get_scheme(scheme).cut_matters)


def test_sfl_v2_server_takes_one_step_per_client():
    v2 = make_trainer("sfl-v2", num_clients=3, local_iters=1)
    before = weights(v2)
    v2.run_round(3)
    server_moved = [not torch.equal(a, b) for a, b in zip(before[-4:], weights(v2)[-4:])]
    assert all(server_moved)
    # Clients in a random order: a different generator gives a different server trajectory.
    other = make_trainer("sfl-v2", num_clients=3, local_iters=1)
    other.generator = torch.Generator().manual_seed(99)
    other.run_round(3)
    assert not all(torch.equal(a, b) for a, b in zip(weights(v2), weights(other)))


def test_psl_keeps_per_client_models_and_evaluates_their_average():
    psl = make_trainer("psl", num_clients=3, local_iters=2)
    psl.run_round(2)
    psl.run_round(2)
    copies = psl._client_copies[0]
    first = next(iter(copies.values()))
    assert first.shape[0] == 3 and not torch.equal(first[0], first[1])
    torch.testing.assert_close(next(psl.model.parameters()), first.mean(0))


# ---------------------------------------------------------------- re-splitting


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "fl"])
@pytest.mark.parametrize("model", [m for m in MODELS if m not in LANGUAGE_MODELS])  # gpt: test_language_model
def test_resplit_preserves_the_function_both_ways(scheme, model):
    trainer = make_trainer(scheme, model=model, local_iters=1)
    x = synthetic_data(1)[0][:16]
    cuts = trainer.model.cuts
    trainer.run_round(cuts[0])
    trainer.model.eval()
    reference = trainer.model(x)
    for cut in list(cuts[1:]) + list(reversed(cuts[:-1])):
        trainer.resplit(cut)
        assert torch.equal(trainer.model(x), reference), f"{model} changed at cut {cut}"
    trainer.model.train()


def test_training_continues_across_cut_moves_without_reinitialising():
    trainer = make_trainer("sfl-ga", local_iters=4)
    losses = [trainer.run_round(cut).train_loss for cut in (1, 3, 2, 1, 3, 2, 1, 3)]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < losses[0], "training must keep its progress while the cut moves"


def test_momentum_moves_with_its_block():
    trainer = make_trainer("sfl-ga", momentum=0.9)
    trainer.run_round(3)
    state = {k: v.clone() for k, v in trainer.optimizer_state().items()}
    assert all(v.abs().sum() > 0 for v in state.values()), "every block has momentum after a round"
    trainer.resplit(1)
    for k, v in trainer.optimizer_state().items():
        assert torch.equal(v, state[k])


@pytest.mark.parametrize("scheme", ["sfl-ga", "sfl-v2", "psl"])
def test_one_client_split_training_is_centralised_sgd_whatever_the_cuts(scheme):
    """K = 1: every block gets its exact gradient, so any cut sequence must reproduce plain SGD with
    momentum and weight decay -- which only holds if weights and momentum survive every re-split."""
    b, iters = 8, 2
    trainer = make_trainer(scheme, num_clients=1, batch_size=b, local_iters=iters, momentum=0.9,
                           weight_decay=1e-3, sampler=RandomSampler(1, b, seed=7), dtype=F64)
    central = build_model("cnn", SHAPE, 10, seed=0).to(F64)
    opt = torch.optim.SGD(central.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    batches = RandomSampler(1, b, seed=7)
    x, y = synthetic_data(dtype=F64)
    for cut in (1, 3, 2, 3, 1):
        trainer.run_round(cut)
        for _ in range(iters):
            idx = batches.next_batch()[0]
            opt.zero_grad()
            F.cross_entropy(central(x[idx]), y[idx]).backward()
            opt.step()
    assert_same(weights(trainer), [p.detach() for p in central.parameters()], exact=False)


# ---------------------------------------------------------------- bit counters


def priced_cost(trainer, cut, previous):
    """The ledger of a round at ``cut`` after ``previous``, as the env's pricer asks for it (a scheme that
    does not split the model trains all of it, whatever the cut)."""
    config, scheme, blocks = trainer.config, get_scheme(trainer.config.scheme), trainer.model.num_blocks
    return round_cost(profile_model(trainer.model), scheme, scheme.client_cut(cut, blocks),
                      None if previous is None else scheme.client_cut(previous, blocks),
                      num_clients=config.num_clients, local_iters=config.local_iters, batch_size=config.batch_size)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bit_counters_match_the_closed_forms(scheme):
    K, I, b = 4, 3, 8
    trainer = make_trainer(scheme, num_clients=K, batch_size=b, local_iters=I)
    p = profile_model(trainer.model)
    for previous, cut in ((None, 2), (2, 3), (3, 1)):
        r = priced_cost(trainer, cut, previous)
        S, q, Q = b * p.smashed_elements[cut] * 32, p.client_model_bits(cut), p.model_bits
        expected = {
            # uplink, downlink (docs/design.md, "One round ledger"), plus migrated blocks when the cut moved
            "sfl-ga": (K * I * S + K * q, I * S + q),
            "sfl-v1": (K * I * S + K * q, K * I * S + q),
            "sfl-v2": (K * I * S + K * q, K * I * S + q),
            "psl": (K * I * S, K * I * S),
            "fl": (K * Q, Q),
        }[scheme]
        migrated_down = p.blocks_bits(previous, cut) if previous and cut > previous and scheme != "fl" else 0.0
        migrated_up = K * p.blocks_bits(cut, previous) if previous and cut < previous and scheme == "psl" else 0.0
        assert r.bits_up == pytest.approx(expected[0] + migrated_up)
        assert r.bits_down == pytest.approx(expected[1] + migrated_down)
        assert r.migrated_bits_down == pytest.approx(migrated_down)
        assert r.migrated_bits_up == pytest.approx(migrated_up)
        assert r.gradient_broadcast == (scheme == "sfl-ga")
        if scheme == "fl":  # FedAvg trains every block whatever the cut
            cut, previous = p.num_blocks, previous and p.num_blocks
        assert (r.cut, r.previous_cut) == (cut, previous)


def test_work_counters_use_the_profile():
    trainer = make_trainer("sfl-ga", batch_size=8)
    p = profile_model(trainer.model)
    r = priced_cost(trainer, 2, None)
    assert r.client_forward_flops == 8 * (p.forward_flops[0] + p.forward_flops[1])
    assert r.client_backward_flops == 8 * (p.backward_flops[0] + p.backward_flops[1])
    assert r.server_flops == 8 * (p.forward_flops[2:].sum() + p.backward_flops[2:].sum())


# ---------------------------------------------------------------- robustness and seeds


@pytest.mark.parametrize("scheme", SCHEMES)
def test_divergence_stops_the_round_cleanly(scheme):
    trainer = make_trainer(scheme, lr=1e6, local_iters=3)
    before = weights(trainer)
    r = trainer.run_round(2)
    assert r.diverged and math.isnan(r.train_loss) and not r.evaluated
    assert_same(weights(trainer), before, exact=True)


def test_same_seed_same_round_results():
    a, b = make_trainer("sfl-ga"), make_trainer("sfl-ga")
    ra, rb = a.run_round(2), b.run_round(2)
    assert ra == rb
    assert_same(weights(a), weights(b), exact=True)
    c = make_trainer("sfl-ga", sampler=RandomSampler(4, 8, seed=1))
    assert c.run_round(2).train_loss != ra.train_loss


def test_evaluation_every_n_rounds():
    trainer = make_trainer("sfl-ga", eval_every=2)
    results = [trainer.run_round(1) for _ in range(4)]
    assert [r.evaluated for r in results] == [False, True, False, True]
    assert 0.0 <= results[1].test_accuracy <= 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scheme": "splitfed"}, "scheme='splitfed' is unknown; allowed: 'sfl-ga', 'sfl-v1'"),
        ({"gradient_aggregation": 1.5}, r"gradient_aggregation=1.5 is out of range; allowed: \[0.0, 1.0\]"),
        ({"aggregation_weights": "loss"}, "allowed: 'data_size', 'uniform'"),
        ({"sizes": np.ones(3)}, "client_sizes=.* allowed: 4 positive sizes"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_trainer(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    trainer = make_trainer("sfl-ga", device="cuda")
    r = trainer.run_round(2)
    assert math.isfinite(r.train_loss) and next(trainer.model.parameters()).is_cuda


