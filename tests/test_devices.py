"""Client devices: measured phone tiers, the measured governor, and what they cost a round."""

import numpy as np
import pytest

from sfl_env.availability import ClientDevices, CpuAvailability, fastest_client_flops, governor_multipliers
from sfl_env.config import ComputeConfig, WirelessConfig
from sfl_env.draws import EpisodeGenerators
from sfl_env.energy import round_energy_j
from sfl_env.errors import ConfigError
from sfl_env.hardware import DEVICE_TIERS
from sfl_env.latency import round_latency
from sfl_env.ledger import RoundCost
from sfl_env.schemes import get_scheme

# One FLASH training iteration: LEAF's FEMNIST CNN, 102.0 MFLOP per sample, batch 10.
FLASH_ITERATION_FLOPS = 102.0e6 * 10
FLASH_MS = {"high": 179.0, "mid": 588.0, "low": 1642.0}  # Pixel 4, Redmi Note 7 Pro, Nexus S


def one_client_round(flops: float) -> RoundCost:
    """A round whose only cost is ``flops`` of client training (forward one third, backward the rest)."""
    return RoundCost(scheme=get_scheme("sfl-ga"), cut=1, previous_cut=1, num_clients=1, local_iters=1, batch_size=10,
                     client_forward_flops=flops / 3, client_backward_flops=2 * flops / 3, server_flops=0.0,
                     smashed_bits=0.0, gradient_broadcast=True, client_model_bits=0.0, smashed_bits_up=0.0,
                     gradient_bits_down=0.0, model_bits_up=0.0, model_bits_down=0.0, migrated_bits_up=0.0,
                     migrated_bits_down=0.0)


@pytest.mark.parametrize("tier", range(len(DEVICE_TIERS)))
def test_a_tier_trains_one_flash_batch_in_the_measured_time(tier):
    mix = tuple(1.0 if i == tier else 0.0 for i in range(len(DEVICE_TIERS)))
    compute = ComputeConfig(device_mix=mix, governor="none")
    devices = ClientDevices.draw(1, compute, np.random.default_rng(0))
    assert devices.tier == (DEVICE_TIERS[tier].name,)
    latency = round_latency(one_client_round(FLASH_ITERATION_FLOPS), bandwidth_share=[1.0], server_cpu_share=[1.0],
                            uplink_gain=[1e-10], client_cpu_hz=devices.cpu_hz, wireless=WirelessConfig(),
                            compute=compute, client_cycles_per_flop=devices.cycles_per_flop)
    # the tiers' throughputs are rounded to 3 digits, so 1 % is the tolerance
    assert latency.total_s * 1000 == pytest.approx(FLASH_MS[DEVICE_TIERS[tier].name], rel=0.01)


def test_a_slower_phone_spends_the_measured_cycles_at_its_own_clock():
    compute = ComputeConfig(governor="none")
    devices = ClientDevices.draw(300, compute, np.random.default_rng(1))
    assert set(devices.tier) == {"high", "mid", "low"}
    np.testing.assert_allclose(devices.flops_per_s, [next(t.training_gflops * 1e9 for t in DEVICE_TIERS
                                                          if t.name == name) for name in devices.tier])
    energy = round_energy_j(one_client_round(1e9), bandwidth_share=[1.0], uplink_gain=[1e-10],
                            client_cpu_hz=devices.cpu_hz[:1], wireless=WirelessConfig(), compute=compute,
                            client_cycles_per_flop=devices.cycles_per_flop[:1])
    # kappa C f^2 with C = cycles per FLOP x FLOPs: the tier's clock and measured cycles
    assert energy[0] == pytest.approx(1e-28 * devices.cycles_per_flop[0] * 1e9 * devices.cpu_hz[0] ** 2)


def test_the_mix_decides_the_tier_shares():
    devices = ClientDevices.draw(4000, ComputeConfig(device_mix=(0.5, 0.5, 0.0)), np.random.default_rng(0))
    shares = {name: devices.tier.count(name) / 4000 for name in ("high", "mid", "low")}
    assert shares["low"] == 0 and shares["high"] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("mix", [(0.2, 0.5, 0.3), (0.0, 0.4, 0.6), (1.0, 0.0, 0.0), (0.3333, 0.3333, 0.3334)])
def test_the_tiers_are_what_generator_choice_draws_and_the_generator_ends_alike(mix):
    config = ComputeConfig(device_mix=mix)
    for seed in range(200):
        rng, twin = np.random.default_rng(seed), np.random.default_rng(seed)
        devices = ClientDevices.draw(10, config, rng)
        expected = [DEVICE_TIERS[i].name for i in twin.choice(len(DEVICE_TIERS), size=10, p=mix)]
        assert list(devices.tier) == expected
        assert rng.random() == twin.random()
        by_name = {t.name: t for t in DEVICE_TIERS}
        assert devices.cpu_hz.tolist() == [by_name[name].cpu_ghz * 1e9 for name in devices.tier]
        assert devices.cycles_per_flop.tolist() == [by_name[name].cycles_per_flop for name in devices.tier]


@pytest.mark.parametrize("config", [ComputeConfig(), ComputeConfig(client_devices="peak")], ids=["tiers", "peak"])
def test_devices_drawn_for_many_episodes_are_each_episodes_own_draw(config):
    generators, twins = EpisodeGenerators(_seeded(12)), _seeded(12)
    rows = np.array([0, 3, 4, 11])
    drawn = ClientDevices.draw_rows(10, config, generators, rows)
    for i, row in enumerate(rows):
        devices = drawn.row(i)
        expected = ClientDevices.draw(10, config, twins[row])
        assert devices.tier == expected.tier
        np.testing.assert_array_equal(devices.cpu_hz, expected.cpu_hz)
        np.testing.assert_array_equal(devices.cycles_per_flop, expected.cycles_per_flop)
    assert [rng.random() for rng in generators] == [rng.random() for rng in twins]


def _seeded(count: int) -> list[np.random.Generator]:
    return [np.random.default_rng(seed) for seed in range(count)]


def test_the_peak_model_keeps_the_datasheet_throughput():
    compute = ComputeConfig(client_devices="peak", governor="none")
    devices = ClientDevices.draw(100, compute, np.random.default_rng(0))
    assert devices.tier == (None,) * 100
    assert 16e9 <= devices.flops_per_s.min() and devices.flops_per_s.max() <= 32e9
    assert fastest_client_flops(compute) == 32e9


def test_the_governor_keeps_the_measured_mean_iteration_time_and_redraws_every_round():
    multipliers = governor_multipliers()
    assert len(multipliers) == 147 and np.mean(1.0 / multipliers) == pytest.approx(1.0)
    assert multipliers.min() == pytest.approx(1.0368 / 1.4864, rel=1e-3)  # 1.04 GHz of a 1.49 GHz harmonic mean
    cpus = CpuAvailability(ClientDevices.draw(5, ComputeConfig(), np.random.default_rng(0)), ComputeConfig(),
                           np.random.default_rng(1))
    clocks = []
    for _ in range(50):
        clocks.append(cpus.cpu_hz / cpus.base_hz)
        cpus.step()
    clocks = np.array(clocks)
    nearest = np.abs(clocks[..., None] - multipliers).min(axis=-1)
    assert nearest.max() < 1e-12 and len(np.unique(clocks.round(12))) > 20
    still = CpuAvailability(ClientDevices.draw(5, ComputeConfig(governor="none"), np.random.default_rng(0)),
                            ComputeConfig(governor="none"), np.random.default_rng(1))
    still.step()
    np.testing.assert_array_equal(still.cpu_hz, still.base_hz)


@pytest.mark.parametrize("kwargs, message", [
    ({"device_mix": (0.5, 0.5)}, "device_mix=(0.5, 0.5) is invalid; allowed: 3 shares >= 0 (tiers high, mid, low)"),
    ({"device_mix": (0.5, 0.4, 0.0)}, "sums to 0.9"),
    ({"device_mix": (1.5, -0.5, 0.0)}, "device_mix[0]=1.5 is out of range"),
    ({"client_devices": "fast"}, "client_devices='fast' is unknown; allowed: 'tiers', 'peak'"),
    ({"governor": "off"}, "governor='off' is unknown; allowed: 'measured', 'none'"),
])
def test_device_options_are_checked_by_name(kwargs, message):
    with pytest.raises(ConfigError) as error:
        ComputeConfig(**kwargs)
    assert message in str(error.value)




def test_cpus_of_many_episodes_hold_each_episodes_devices():
    config, rows = ComputeConfig(), np.arange(3)
    generators, twins = EpisodeGenerators(_seeded(3)), _seeded(3)
    cpus = CpuAvailability(ClientDevices.draw_rows(4, config, generators, rows), config, generators)
    for devices, twin in zip(cpus.devices, twins):
        expected = ClientDevices.draw(4, config, twin)
        assert devices.tier == expected.tier
        np.testing.assert_array_equal(devices.cpu_hz, expected.cpu_hz)
    with pytest.raises(ValueError, match="devices for 3 episodes and 2 generators"):
        CpuAvailability(ClientDevices.draw_rows(4, config, generators, rows), config, _seeded(2))
