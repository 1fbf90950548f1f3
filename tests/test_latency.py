"""Round latency ledger: hand-computed phases for every scheme, critical-path bookkeeping, monotonicity."""

import dataclasses
import math
import warnings

import numpy as np
import pytest

from sfl_env.latency import PHASES, allocation_problem, round_latency
from sfl_env.latency_kernels import transfer
from sfl_env.ledger import RoundCost
from sfl_env.schemes import SCHEMES, get_scheme
from sfl_env.availability import ClientDevices
from sfl_env.config import ComputeConfig, WirelessConfig
from sfl_env.validation import ConfigError
from sfl_env.wireless import (
    Channel,
    broadcast_rate_bps,
    unicast_rate_bps,
    uplink_rate_bps,
)


def make_result(scheme="sfl-ga", **overrides) -> RoundCost:
    """A round's cost with hand-picked work and sizes (the ledger's own numbers are tested in
    test_ledger.py). The latency reads work, sizes and migration, never the traffic totals."""
    values = dict(
        scheme=get_scheme(scheme), cut=2, previous_cut=1, num_clients=2, local_iters=3, batch_size=32,
        client_forward_flops=1e8, client_backward_flops=2e8, server_flops=1e9,
        smashed_bits=1e5, gradient_broadcast=scheme == "sfl-ga",
        client_model_bits=1e6, migrated_bits_up=0.0, migrated_bits_down=2e6,
        smashed_bits_up=math.nan, gradient_bits_down=math.nan, model_bits_up=math.nan, model_bits_down=math.nan,
    )
    if scheme == "fl":
        values |= dict(server_flops=0.0, smashed_bits=0.0, migrated_bits_down=0.0, cut=4, previous_cut=4)
    if scheme == "psl":
        values |= dict(migrated_bits_up=4e6, migrated_bits_down=0.0, cut=1, previous_cut=2)
    return RoundCost(**(values | overrides))


# The hand case: B = 1 MHz, B_D = 5 MHz, p = 0.1 W, P_s = 1 W. Client full-band uplink SNRs 1.5 and 7.5,
# so at beta = 1/2 the rates are 0.5 MHz * log2(4) = 1 Mbit/s and 0.5 MHz * log2(16) = 2 Mbit/s; the
# downlink SNRs are 3 and 15: broadcast 5 MHz * log2(4) = 10 Mbit/s, unicasts 5 and 10 Mbit/s.
# f = 1 and 2 GHz, F = 10 GHz, one cycle per FLOP, phi = (0.8, 0.2). Per iteration:
#   t_F = (0.1, 0.05)  t_U = (0.1, 0.05)  t_S = (0.125, 0.5)  t_B = (0.2, 0.1)
#   S / r_D = 0.01     S / r^D = (0.02, 0.01)
# Model aggregation: max(1, 0.5) + 0.1 = 1.1 s; a 2 Mbit migration broadcast: 0.2 s.
HAND_WIRELESS = WirelessConfig(
    bandwidth_mhz=1.0, downlink_bandwidth_mhz=5.0, client_power_dbm=20.0, server_power_dbm=30.0
)
HAND_COMPUTE = ComputeConfig(client_cycles_per_flop=1.0, server_cycles_per_flop=1.0, server_cpu_ghz=10.0)
HAND_GAIN = np.array([1.5, 7.5]) * HAND_WIRELESS.bandwidth_hz * HAND_WIRELESS.noise_psd_w_per_hz / 0.1
HAND_CPU_HZ = np.array([1e9, 2e9])
HAND_BETA, HAND_PHI = np.array([0.5, 0.5]), np.array([0.8, 0.2])

HAND_PHASES = {  # I = 3 iterations; order of PHASES
    # straggler before the barrier: client 1 (0.6 s); then the broadcast; then the slower backward
    "sfl-ga": (0.15, 0.15, 1.5, 0.03, 0.6, 1.1, 0.2),
    # chains 0.545 and 0.71 s: client 1 is the straggler of everything
    "sfl-v1": (0.15, 0.15, 1.5, 0.03, 0.3, 1.1, 0.2),
    # client 0 is slower to upload (0.2 s); server 0.1 s per client; client 0 slower after (0.22 s)
    "sfl-v2": (0.3, 0.3, 0.6, 0.06, 0.6, 1.1, 0.2),
    # the shared server is a barrier, as in sfl-ga: client 1 before it (0.6 s), then client 0's unicast
    # and backward (0.22 s); no model aggregation; each client uploads 2 Mbit of migrated blocks: max(2, 1) s
    "psl": (0.15, 0.15, 1.5, 0.06, 0.6, 0.0, 2.0),
    # client 0: 3 * (0.1 + 0.2) s of training + 1 s upload; then a 0.1 s model broadcast
    "fl": (0.3, 0.0, 0.0, 0.0, 0.6, 1.1, 0.0),
}
HAND_TOTALS = {"sfl-ga": 3.73, "sfl-v1": 3.43, "sfl-v2": 3.16, "psl": 4.46, "fl": 2.0}


def hand_latency(result, beta=HAND_BETA, phi=HAND_PHI, wireless=HAND_WIRELESS, compute=HAND_COMPUTE):
    return round_latency(
        result, bandwidth_share=beta, server_cpu_share=phi, uplink_gain=HAND_GAIN,
        client_cpu_hz=HAND_CPU_HZ, wireless=wireless, compute=compute,
    )


def test_hand_case_rates():
    w = HAND_WIRELESS
    uplink = uplink_rate_bps(HAND_BETA, HAND_GAIN, w.client_power_w, w.bandwidth_hz, w.noise_psd_w_per_hz)
    downlink = (HAND_GAIN, w.server_power_w, w.downlink_bandwidth_hz, w.noise_psd_w_per_hz)
    assert uplink == pytest.approx([1e6, 2e6], rel=1e-12)
    assert broadcast_rate_bps(*downlink) == pytest.approx(1e7, rel=1e-12)
    assert unicast_rate_bps(*downlink, 2) == pytest.approx([5e6, 1e7], rel=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_hand_case_every_phase_and_total(scheme):
    latency = hand_latency(make_result(scheme))
    assert tuple(latency.phases) == PHASES
    assert tuple(latency.phases.values()) == pytest.approx(HAND_PHASES[scheme], rel=1e-12, abs=1e-15)
    assert latency.total_s == pytest.approx(HAND_TOTALS[scheme], rel=1e-12)


def test_hand_case_per_client_arrays():
    latency = hand_latency(make_result("sfl-ga"))
    assert latency.client_forward_s == pytest.approx([0.1, 0.05])
    assert latency.uplink_s == pytest.approx([0.1, 0.05])
    assert latency.server_s == pytest.approx([0.125, 0.5])
    assert latency.gradient_downlink_s == pytest.approx([0.01, 0.01])
    assert latency.client_backward_s == pytest.approx([0.2, 0.1])
    assert hand_latency(make_result("sfl-v1")).gradient_downlink_s == pytest.approx([0.02, 0.01])
    assert hand_latency(make_result("sfl-v2")).server_s == pytest.approx([0.1, 0.1])
    with pytest.raises(ValueError):
        latency.uplink_s[0] = 0.0


def test_partial_gradient_aggregation_unicasts_after_the_barrier():
    latency = hand_latency(make_result("sfl-ga", gradient_broadcast=False))
    # 0.6 s before the barrier, then client 0's unicast + backward, 0.02 + 0.2 s
    assert latency.phases["gradient_downlink"] == pytest.approx(0.06)
    assert latency.phases["client_backward"] == pytest.approx(0.6)
    assert latency.total_s == pytest.approx(3 * 0.82 + 1.3)


def test_sfl_v2_ignores_the_server_share():
    result = make_result("sfl-v2")
    assert hand_latency(result, phi=np.array([1.0, 0.0])).total_s == hand_latency(result).total_s


@pytest.mark.parametrize("num_clients", [1, 2, 5, 8])
def test_sfl_ga_broadcasts_one_gradient_while_sfl_v1_unicasts_k(num_clients):
    w = WirelessConfig()
    gain = np.full(num_clients, 1e-11)
    args = dict(
        bandwidth_share=np.full(num_clients, 1 / num_clients), server_cpu_share=np.full(num_clients, 1 / num_clients),
        uplink_gain=gain, client_cpu_hz=np.full(num_clients, 1e9), wireless=w, compute=ComputeConfig(),
    )
    ga = round_latency(make_result("sfl-ga", num_clients=num_clients), **args)
    v1 = round_latency(make_result("sfl-v1", num_clients=num_clients), **args)
    broadcast_s = 1e5 / broadcast_rate_bps(gain, w.server_power_w, w.downlink_bandwidth_hz, w.noise_psd_w_per_hz)
    assert ga.phases["gradient_downlink"] == pytest.approx(3 * broadcast_s, rel=1e-12)
    assert v1.phases["gradient_downlink"] == pytest.approx(3 * num_clients * broadcast_s, rel=1e-12)


def reference_total(result, beta, phi, gain, cpu_hz, w, c):
    """The round formulas written out directly, without any phase bookkeeping."""
    K, I, S, q = result.num_clients, result.local_iters, result.smashed_bits, result.client_model_bits
    with np.errstate(divide="ignore"):
        r = uplink_rate_bps(beta, gain, w.client_power_w, w.bandwidth_hz, w.noise_psd_w_per_hz)
        r_d = broadcast_rate_bps(gain, w.server_power_w, w.downlink_bandwidth_hz, w.noise_psd_w_per_hz)
        r_dk = unicast_rate_bps(gain, w.server_power_w, w.downlink_bandwidth_hz, w.noise_psd_w_per_hz, K)
        t_f = c.client_cycles_per_flop * result.client_forward_flops / cpu_hz
        t_b = c.client_cycles_per_flop * result.client_backward_flops / cpu_hz
        cycles = c.server_cycles_per_flop * result.server_flops
        t_s = cycles / (phi * c.server_cpu_hz)
        if result.scheme.name == "fl":
            return np.max(I * (t_f + t_b) + q / r) + q / r_d
        if result.scheme.name == "sfl-ga" and result.gradient_broadcast:
            t_it = np.max(t_f + S / r + t_s) + S / r_d + np.max(t_b)
        elif result.scheme.name in ("sfl-ga", "psl"):  # a shared server: a barrier, then unicasts
            t_it = np.max(t_f + S / r + t_s) + np.max(S / r_dk + t_b)
        elif result.scheme.name == "sfl-v2":
            t_it = np.max(t_f + S / r) + K * cycles / c.server_cpu_hz + np.max(S / r_dk + t_b)
        else:
            t_it = np.max(t_f + S / r + t_s + S / r_dk + t_b)
        aggregation = np.max(q / r) + q / r_d if result.scheme.name != "psl" else 0.0
        migration = result.migrated_bits_down / r_d
        if result.migrated_bits_up > 0:
            migration += np.max(result.migrated_bits_up / K / r)
    return I * t_it + aggregation + migration


def random_case(seed, scheme):
    rng = np.random.default_rng(seed)
    K = int(rng.integers(1, 7))
    fl = scheme == "fl"
    result = make_result(
        scheme, num_clients=K, local_iters=int(rng.integers(1, 6)),
        client_forward_flops=float(rng.uniform(1e6, 1e9)), client_backward_flops=float(rng.uniform(1e6, 2e9)),
        server_flops=0.0 if fl else float(rng.uniform(1e6, 1e10)),
        smashed_bits=0.0 if fl else float(rng.uniform(1e3, 1e7)), client_model_bits=float(rng.uniform(1e4, 1e8)),
        migrated_bits_up=float(rng.choice([0.0, rng.uniform(0, 1e7)])) if scheme == "psl" else 0.0,
        migrated_bits_down=0.0 if fl else float(rng.choice([0.0, rng.uniform(0, 1e7)])),
    )
    wireless = WirelessConfig(bandwidth_mhz=float(rng.uniform(1, 20)), downlink_bandwidth_mhz=float(rng.uniform(1, 20)))
    compute = ComputeConfig(client_devices="peak")
    shares = dict(bandwidth_share=rng.dirichlet(np.ones(K)), server_cpu_share=rng.dirichlet(np.ones(K)))
    state = dict(uplink_gain=Channel(K, wireless, rng).gain, client_cpu_hz=ClientDevices.draw(K, compute, rng).cpu_hz)
    return result, shares, state, wireless, compute


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("seed", range(20))
def test_phases_sum_to_the_reference_total_on_random_cases(scheme, seed):
    result, shares, state, wireless, compute = random_case(seed, scheme)
    latency = round_latency(result, **shares, **state, wireless=wireless, compute=compute)
    expected = reference_total(
        result, shares["bandwidth_share"], shares["server_cpu_share"], state["uplink_gain"],
        state["client_cpu_hz"], wireless, compute,
    )
    assert latency.total_s == pytest.approx(expected, rel=1e-12)
    assert math.fsum(latency.phases.values()) == pytest.approx(latency.total_s, rel=1e-14)
    assert all(seconds >= 0 for seconds in latency.phases.values())


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("band", ["bandwidth_mhz", "downlink_bandwidth_mhz"])
def test_more_bandwidth_never_increases_latency(scheme, seed, band):
    result, shares, state, wireless, compute = random_case(seed, scheme)
    before = round_latency(result, **shares, **state, wireless=wireless, compute=compute).total_s
    wider = dataclasses.replace(wireless, **{band: 2 * getattr(wireless, band)})
    after = round_latency(result, **shares, **state, wireless=wider, compute=compute).total_s
    assert after < before  # every scheme sends something on both links, and every transfer gets faster


def allocated_stage_s(result, latency, shares, state, wireless):
    """Seconds of the stage each scheme's allocation minimises, written out from the per-client arrays."""
    t = latency
    if result.scheme.name in ("sfl-ga", "psl"):
        return np.max(t.client_forward_s + t.uplink_s + t.server_s)
    if result.scheme.name == "sfl-v1":
        return np.max(t.client_forward_s + t.uplink_s + t.server_s + t.gradient_downlink_s + t.client_backward_s)
    if result.scheme.name == "sfl-v2":
        return np.max(t.client_forward_s + t.uplink_s)
    r = uplink_rate_bps(shares["bandwidth_share"], state["uplink_gain"], wireless.client_power_w,
                        wireless.bandwidth_hz, wireless.noise_psd_w_per_hz)
    I = result.local_iters
    return np.max(I * t.client_forward_s + I * t.client_backward_s + result.client_model_bits / r)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("seed", range(5))
def test_allocation_problem_is_the_schemes_allocated_stage(scheme, seed):
    from solvers import iteration_latency

    result, shares, state, wireless, compute = random_case(seed, scheme)
    problem = allocation_problem(result, state["uplink_gain"], state["client_cpu_hz"], wireless, compute)
    solver_t = iteration_latency(problem, shares["bandwidth_share"], shares["server_cpu_share"]).max()
    latency = round_latency(result, **shares, **state, wireless=wireless, compute=compute)
    assert solver_t == pytest.approx(allocated_stage_s(result, latency, shares, state, wireless), rel=1e-12)


def pre_barrier_problem(result, state, wireless, compute):
    """The problem every scheme used to get: only the terms before SFL-GA's barrier."""
    from solvers import ResourceProblem

    K = result.num_clients
    return ResourceProblem(
        fixed_time_s=compute.client_cycles_per_flop * result.client_forward_flops / state["client_cpu_hz"],
        upload_bits=np.full(K, result.smashed_bits),
        server_cycles=np.full(K, compute.server_cycles_per_flop * result.server_flops),
        channel_gain=state["uplink_gain"], tx_power_w=np.full(K, wireless.client_power_w),
        noise_psd_w_per_hz=wireless.noise_psd_w_per_hz, bandwidth_hz=wireless.bandwidth_hz,
        server_cpu_hz=compute.server_cpu_hz,
    )


@pytest.mark.parametrize("scheme", ["sfl-ga", "sfl-v1", "sfl-v2", "psl"])
def test_the_solved_allocation_minimises_the_schemes_own_critical_path(scheme):
    """Optimal for the scheme's own stage: never worse than the equal split, nor than the pre-barrier
    allocation that was once handed to every scheme (which biased sfl-v1 and sfl-v2)."""
    from solvers import equal_split, solve

    gains = []
    for seed in range(30):
        result, _, state, wireless, compute = random_case(seed, scheme)
        if result.num_clients < 2:
            continue
        problem = allocation_problem(result, state["uplink_gain"], state["client_cpu_hz"], wireless, compute)
        candidates = {"solved": solve(problem), "equal": equal_split(problem),
                      "pre_barrier": solve(pre_barrier_problem(result, state, wireless, compute))}
        stage_s = {}
        for name, allocation in candidates.items():
            shares = dict(bandwidth_share=allocation.bandwidth_share, server_cpu_share=allocation.server_cpu_share)
            latency = round_latency(result, **shares, **state, wireless=wireless, compute=compute)
            stage_s[name] = allocated_stage_s(result, latency, shares, state, wireless)
        assert not candidates["solved"].fallback
        assert stage_s["solved"] <= stage_s["equal"] * (1 + 1e-9)
        assert stage_s["solved"] <= stage_s["pre_barrier"] * (1 + 1e-9)
        gains.append(stage_s["pre_barrier"] / stage_s["solved"] - 1)
    if scheme in ("sfl-ga", "psl"):  # their allocated stage is the pre-barrier one
        assert max(gains) < 1e-9
    else:  # the chains that include the downlink and backward pass (or exclude the server) differ
        assert max(gains) > 1e-3


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_zero_bandwidth_share_makes_the_round_infinite_without_warnings(scheme):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        latency = hand_latency(make_result(scheme), beta=np.array([1.0, 0.0]))
    assert latency.total_s == math.inf
    assert latency.uplink_s[1] == math.inf or scheme == "fl"


def test_a_zero_server_share_is_infinite_only_where_the_share_is_used():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ga = hand_latency(make_result("sfl-ga"), phi=np.array([1.0, 0.0]))
        v2 = hand_latency(make_result("sfl-v2"), phi=np.array([1.0, 0.0]))
    assert ga.total_s == math.inf and ga.phases["server"] == math.inf
    assert math.isfinite(v2.total_s)


def test_a_zero_share_without_work_costs_nothing():
    result = make_result("psl", smashed_bits=0.0, server_flops=0.0, migrated_bits_up=0.0)
    latency = hand_latency(result, beta=np.array([1.0, 0.0]), phi=np.array([1.0, 0.0]))
    assert math.isfinite(latency.total_s)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(bandwidth_share=np.array([0.5, 0.5, 0.0])), "bandwidth_share has shape"),
        (dict(bandwidth_share=np.array([0.7, 0.7])), "bandwidth_share sums to 1.4"),
        (dict(server_cpu_share=np.array([-0.1, 0.5])), "server_cpu_share="),
        (dict(client_cpu_hz=np.array([0.0, 1e9])), "client_cpu_hz="),
        (dict(uplink_gain=np.array([np.nan, 1e-10])), "uplink_gain="),
    ],
)
def test_bad_inputs_raise_config_errors(overrides, match):
    args = dict(
        bandwidth_share=HAND_BETA, server_cpu_share=HAND_PHI, uplink_gain=HAND_GAIN, client_cpu_hz=HAND_CPU_HZ,
        wireless=HAND_WIRELESS, compute=HAND_COMPUTE,
    ) | overrides
    with pytest.raises(ConfigError, match=match):
        round_latency(make_result("sfl-ga"), **args)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("seed", range(3))
def test_skipping_the_input_checks_changes_no_number(scheme, seed):
    result, shares, state, wireless, compute = random_case(seed, scheme)
    checked = round_latency(result, **shares, **state, wireless=wireless, compute=compute)
    trusted = round_latency(result, **shares, **state, wireless=wireless, compute=compute, check_inputs=False)
    assert trusted.total_s == checked.total_s and trusted.phases == checked.phases
    for field in ("client_forward_s", "uplink_s", "server_s", "gradient_downlink_s", "client_backward_s"):
        np.testing.assert_array_equal(getattr(trusted, field), getattr(checked, field))
    problem = allocation_problem(result, state["uplink_gain"], state["client_cpu_hz"], wireless, compute)
    trusted = allocation_problem(result, state["uplink_gain"], state["client_cpu_hz"], wireless, compute,
                                 check_inputs=False)
    for name in ("fixed_time_s", "upload_bits", "server_cycles", "channel_gain", "tx_power_w"):
        np.testing.assert_array_equal(getattr(trusted, name), getattr(problem, name))


@pytest.mark.parametrize(
    "bits, rate, expected",
    [
        (2e6, 1e6, 2.0),  # a plain division
        (2e6, 0.0, math.inf),  # a zero rate
        (2e6, np.nan, math.inf),  # a rate that is not positive
        (2e6, -1.0, math.inf),
        (0.0, 1e6, 0.0),  # nothing to send
        (0.0, 0.0, 0.0),
        (np.nan, 1e6, 0.0),  # nothing that counts as bits
    ],
)
def test_transfer_seconds(bits, rate, expected):
    assert transfer(bits, rate) == expected


@pytest.mark.parametrize("scheme", SCHEMES)
def test_exact_and_cvxpy_agree_on_every_schemes_problem(scheme):
    from solvers import equal_split, solve

    for seed in range(8):
        result, _, state, wireless, compute = random_case(100 + seed, scheme)
        problem = allocation_problem(result, state["uplink_gain"], state["client_cpu_hz"], wireless, compute)
        exact, convex = solve(problem, "exact"), solve(problem, "cvxpy")
        assert not exact.fallback and not convex.fallback
        assert exact.latency_s == pytest.approx(convex.latency_s, rel=1e-6)
        assert exact.latency_s <= equal_split(problem).latency_s * (1 + 1e-12)


def test_the_kernels_codes_name_the_phases_and_cost_fields_they_read():
    from sfl_env import latency_kernels as kernels
    from sfl_env.latency import COST_FIELDS

    codes = ("FORWARD", "UPLINK", "SERVER", "DOWNLINK", "BACKWARD", "MODEL_UP", "MODEL_DOWN", "MIGRATION_DOWN",
             "MIGRATION_UP")
    assert [getattr(kernels, code) for code in codes] == list(kernels.ROUND_PHASE_CODES.values())
    assert list(kernels.ROUND_PHASE_CODES)[kernels.BACKWARD] == "client_backward"
    columns = ("C_FORWARD", "C_BACKWARD", "C_SERVER", "C_SMASHED", "C_MODEL", "C_BITS_UP", "C_MIGRATED_UP",
               "C_MIGRATED_DOWN")
    assert [COST_FIELDS[getattr(kernels, column)] for column in columns] == [
        "client_forward_flops", "client_backward_flops", "server_flops", "smashed_bits", "client_model_bits", "bits_up",
        "migrated_bits_up", "migrated_bits_down"]
    assert [PHASES[p] for p in kernels.REPORTED] == [
        "client_forward", "uplink", "server", "gradient_downlink", "client_backward", "model_aggregation",
        "model_aggregation", "migration", "migration"]


def test_an_allocated_stage_with_a_fixed_round_phase_is_refused_by_name():
    from sfl_env.latency_kernels import schedule_table
    from sfl_env.schemes import Scheme, Server
    from sfl_env.schemes.base import Stage

    scheme = Scheme("odd", "a broadcast inside the allocated chain", Server.NONE, False, True,
                    (Stage(("model_broadcast", "model_upload"), per_iteration=False, allocated=True),))
    with pytest.raises(ValueError, match=r"scheme 'odd': its allocated stage .*model_broadcast.* holds a round phase"):
        schedule_table(scheme)
