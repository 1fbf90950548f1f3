"""Channel and compute model: path loss, Shannon rates, fading statistics, mobility, validation."""

import math

import numpy as np
import pytest

from sfl_env.availability import ClientDevices
from sfl_env.config import ComputeConfig, WirelessConfig
from sfl_env.validation import ConfigError
from sfl_env.wireless import (
    Channel,
    broadcast_rate_bps,
    path_loss_db,
    unicast_rate_bps,
    uplink_rate_bps,
)

N0 = 1e-20  # W/Hz


def test_reference_config_in_si_units():
    w, c = WirelessConfig(), ComputeConfig()
    assert w.bandwidth_hz == 10e6 and w.downlink_bandwidth_hz == 10e6
    assert w.client_power_w == pytest.approx(0.19953, rel=1e-4)
    assert w.server_power_w == pytest.approx(1.0)
    assert w.noise_psd_w_per_hz == pytest.approx(10 ** (-20.4))
    assert w.distance_m == (50.0, 500.0)
    assert c.client_cpu_hz == (1e9, 2e9) and c.server_cpu_hz == 100e9


def test_path_loss_hand_values():
    assert path_loss_db(100.0) == pytest.approx(128.1 - 37.6)
    assert path_loss_db(1000.0) == pytest.approx(128.1)
    assert path_loss_db(np.array([100.0, 1000.0]), 100.0, 20.0) == pytest.approx([80.0, 100.0])


def test_uplink_rate_hand_value():
    # Full-band SNR p g / (B N0) = 1.5; half the band doubles it to 3, and log2(1 + 3) = 2.
    bandwidth_hz, power_w = 1e6, 0.1
    gain = 1.5 * bandwidth_hz * N0 / power_w
    assert uplink_rate_bps(0.5, gain, power_w, bandwidth_hz, N0) == pytest.approx(1e6, rel=1e-12)
    assert uplink_rate_bps(1.0, gain, power_w, bandwidth_hz, N0) == pytest.approx(1e6 * math.log2(2.5))


def test_uplink_rate_is_zero_without_share_and_vectorised():
    rates = uplink_rate_bps(np.array([0.0, 0.25, 0.75]), np.full(3, 1e-10), 0.2, 10e6, N0)
    assert rates.shape == (3,) and rates[0] == 0.0 and 0 < rates[1] < rates[2]


def test_uplink_rate_increases_in_share_and_saturates():
    power_w, gain, bandwidth_hz = 0.2, 1e-14, 10e6
    limit = power_w * gain / (N0 * math.log(2))
    shares = np.linspace(0.01, 1.0, 100)
    rates = uplink_rate_bps(shares, gain, power_w, bandwidth_hz, N0)
    assert np.all(np.diff(rates) > 0)
    assert np.all(rates < limit)
    huge_band = uplink_rate_bps(1.0, gain, power_w, 1e15, N0)
    assert huge_band == pytest.approx(limit, rel=1e-3)


def test_broadcast_rate_is_limited_by_the_worst_gain():
    gains = np.array([1e-9, 1e-12, 1e-10])
    assert broadcast_rate_bps(gains, 1.0, 10e6, N0) == pytest.approx(
        10e6 * math.log2(1 + 1.0 * 1e-12 / (10e6 * N0))
    )
    assert broadcast_rate_bps(gains, 1.0, 10e6, N0) == broadcast_rate_bps(np.array([1e-12]), 1.0, 10e6, N0)


def test_unicast_rate_uses_one_kth_of_the_band_and_of_the_power():
    gains = np.array([1e-12, 4e-12])
    expected = 5e6 * np.log2(1 + 1.0 * gains / (10e6 * N0))
    assert unicast_rate_bps(gains, 1.0, 10e6, N0, 2) == pytest.approx(expected)
    equal = np.full(4, 1e-12)
    assert unicast_rate_bps(equal, 1.0, 10e6, N0, 4) == pytest.approx(broadcast_rate_bps(equal, 1.0, 10e6, N0) / 4)


def gain_sequence(seed, rounds=20, **config):
    channel = Channel(5, WirelessConfig(**config), np.random.default_rng(seed))
    sequence = []
    for _ in range(rounds):
        sequence.append(channel.gain)
        channel.step(1.0)
    return np.array(sequence)


def test_same_seed_same_gains_and_different_seed_differs():
    moving = {"mobility_km_per_round": 0.01}
    np.testing.assert_array_equal(gain_sequence(3, **moving), gain_sequence(3, **moving))
    assert np.all(gain_sequence(3) != gain_sequence(4))


def test_gain_is_path_loss_less_shadowing_times_fading_power():
    channel = Channel(4, WirelessConfig(), np.random.default_rng(0))
    assert np.all(channel.shadowing_db != 0)
    expected = 10 ** (-(path_loss_db(channel.distance_m) - channel.shadowing_db) / 10) * channel.fading_power
    np.testing.assert_allclose(channel.gain, expected, rtol=1e-12)
    assert np.all((channel.distance_m >= 50) & (channel.distance_m <= 500))


def test_no_fading_gives_pure_path_loss_every_round():
    channel = Channel(3, WirelessConfig(fading="none", shadowing_db=0.0), np.random.default_rng(0))
    first = channel.gain
    channel.step(1.0)
    np.testing.assert_array_equal(channel.gain, first)
    np.testing.assert_allclose(first, 10 ** (-path_loss_db(channel.distance_m) / 10), rtol=1e-12)



@pytest.mark.parametrize("config", [{}, {"fading_blocks": 1, "fading_correlation": 0.0},
                                    {"fading": "none", "mobility_km_per_round": 0.02},
                                    {"shadowing_db": 0.0, "mobility_km_per_round": 0.01}, {"speed_km_h": 0.0}])
def test_episodes_of_one_channel_equal_channels_of_their_own(config):
    # Many episodes draw and move in one compiled loop (on threads when large); one episode by numpy's draws.
    seeds, wireless = range(4), WirelessConfig(**config)
    together = Channel(5, wireless, [np.random.default_rng(seed) for seed in seeds])
    alone = [Channel(5, wireless, np.random.default_rng(seed)) for seed in seeds]
    for elapsed_s in (0.5, 2.0, 0.0, 7.5):
        together.step(np.full(len(seeds), elapsed_s))
        for channel in alone:
            channel.step(elapsed_s)
        np.testing.assert_array_equal(together.gain, np.stack([channel.gain for channel in alone]))
        np.testing.assert_array_equal(together.distance_m, np.stack([channel.distance_m for channel in alone]))

def fading_powers(correlation, num_clients, rounds, seed=0):
    channel = Channel(num_clients, WirelessConfig(fading_correlation=correlation, fading_blocks=1),
                      np.random.default_rng(seed))
    powers = []
    for _ in range(rounds):
        powers.append(channel.fading_power)
        channel.step(1.0)
    return np.array(powers)  # (rounds, clients)


def lag_one_correlation(powers):
    return np.corrcoef(powers[:-1].ravel(), powers[1:].ravel())[0, 1]


def test_correlated_fading_keeps_consecutive_gains_close():
    assert lag_one_correlation(fading_powers(0.99, 200, 50)) > 0.9  # rho^2 = 0.98 in theory
    assert abs(lag_one_correlation(fading_powers(0.0, 200, 50))) < 0.05


@pytest.mark.parametrize("correlation", [0.0, 0.9])
def test_fading_power_has_unit_mean(correlation):
    powers = fading_powers(correlation, 1000, 40)
    assert powers.mean() == pytest.approx(1.0, abs=0.03)
    assert powers[-1].mean() == pytest.approx(1.0, abs=0.1)  # marginally Exp(1) in every round


def test_mobility_moves_distances_but_keeps_them_in_range():
    config = WirelessConfig(distance_km=(0.1, 0.2), mobility_km_per_round=0.3)
    channel = Channel(50, config, np.random.default_rng(0))
    start = channel.distance_m
    for _ in range(100):
        channel.step(1.0)
        assert np.all((channel.distance_m >= 100.0) & (channel.distance_m <= 200.0))
    assert not np.allclose(channel.distance_m, start)
    assert np.all(Channel(5, WirelessConfig(), np.random.default_rng(0)).distance_m > 0)


def test_static_clients_keep_their_distance():
    channel = Channel(5, WirelessConfig(), np.random.default_rng(0))
    start = channel.distance_m
    channel.step(1.0)
    np.testing.assert_array_equal(channel.distance_m, start)


def test_peak_client_frequencies_are_drawn_in_range_from_the_generator():
    config = ComputeConfig(client_devices="peak", client_cpu_ghz=(1.0, 3.0))
    hz = ClientDevices.draw(1000, config, np.random.default_rng(0)).cpu_hz
    assert hz.shape == (1000,) and hz.min() >= 1e9 and hz.max() <= 3e9 and hz.std() > 0.4e9
    np.testing.assert_array_equal(hz, ClientDevices.draw(1000, config, np.random.default_rng(0)).cpu_hz)


@pytest.mark.parametrize(
    "make, field, allowed",
    [
        (lambda: WirelessConfig(bandwidth_mhz=-1.0), "bandwidth_mhz", "[0.001, "),
        (lambda: WirelessConfig(downlink_bandwidth_mhz=0.0), "downlink_bandwidth_mhz", "[0.001, "),
        (lambda: WirelessConfig(fading_correlation=1.0), "fading_correlation", "[0.0, 1.0)"),
        (lambda: WirelessConfig(fading_correlation=-0.1), "fading_correlation", "[0.0, 1.0)"),
        (lambda: WirelessConfig(distance_km=(0.5, 0.05)), "distance_km", "0 < low <= high"),
        (lambda: WirelessConfig(distance_km=(0.0, 0.5)), "distance_km[0]", "[0.001, "),
        (lambda: WirelessConfig(distance_km=0.3), "distance_km", "a pair"),
        (lambda: WirelessConfig(fading="rician"), "fading", "'rayleigh', 'none'"),
        (lambda: WirelessConfig(mobility_km_per_round=-0.01), "mobility_km_per_round", "[0.0, "),
        (lambda: WirelessConfig(client_power_dbm=float("nan")), "client_power_dbm", "a finite number"),
        (lambda: ComputeConfig(client_cpu_ghz=(2.0, 1.0)), "client_cpu_ghz", "0 < low <= high"),
        (lambda: ComputeConfig(server_cpu_ghz=0), "server_cpu_ghz", "[0.001, "),
        (lambda: ComputeConfig(client_cycles_per_flop=-1.0), "client_cycles_per_flop", "[1e-06, "),
    ],
)
def test_config_validation_names_the_field_and_range(make, field, allowed):
    with pytest.raises(ConfigError) as error:
        make()
    message = str(error.value)
    assert message.startswith(f"{field}=") and allowed in message


def test_config_accepts_lists_and_stores_tuples():
    config = WirelessConfig(distance_km=[0.1, 0.1])
    assert config.distance_km == (0.1, 0.1)
    channel = Channel(3, config, np.random.default_rng(0))
    assert np.allclose(channel.distance_m, 100.0)


def test_channel_rejects_no_clients():
    with pytest.raises(ConfigError, match="num_clients"):
        Channel(0, WirelessConfig(), np.random.default_rng(0))


def test_gain_follows_the_distances_after_mobility_steps():
    channel = Channel(4, WirelessConfig(mobility_km_per_round=0.05), np.random.default_rng(1))
    for _ in range(3):
        channel.step(1.0)
        expected = 10 ** (-(path_loss_db(channel.distance_m) - channel.shadowing_db) / 10) * channel.fading_power
        np.testing.assert_allclose(channel.gain, expected, rtol=1e-12)


def test_uncorrelated_fading_redraws_from_the_generator_alone():
    # rho = 0: each round's fading is a fresh draw, the same numbers a twin generator gives.
    channel = Channel(6, WirelessConfig(fading_correlation=0.0, fading_blocks=1, shadowing_db=0.0),
                      np.random.default_rng(5))
    twin = np.random.default_rng(5)
    twin.uniform(size=6)  # the distances
    twin.normal(size=(2, 6))  # the first fading state
    channel.step(1.0)
    real, imag = twin.normal(0.0, np.sqrt(0.5), (2, 6))
    # The same draws; |h|^2 is computed in compiled code (the C library's hypot), so to round-off of numpy's abs.
    np.testing.assert_allclose(channel.fading_power, np.abs(real + 1j * imag) ** 2, rtol=1e-15, atol=0)


def test_uplink_rate_is_the_same_with_and_without_zero_shares():
    # Positive shares take a shortcut; a zero share elsewhere in the vector must not change the others.
    gains = np.array([1e-10, 3e-11, 2e-12])
    shares = np.array([0.5, 0.3, 0.2])
    with_zero = uplink_rate_bps(np.append(shares, 0.0), np.append(gains, 1e-10), 0.2, 10e6, N0)
    np.testing.assert_array_equal(uplink_rate_bps(shares, gains, 0.2, 10e6, N0), with_zero[:3])
    assert with_zero[3] == 0.0


@pytest.mark.parametrize("speed_km_h, seconds", [(3.0, 10.0), (30.0, 1.0), (30.0, 10.0)])
def test_shadowing_keeps_its_spread_and_decorrelates_over_distance_travelled(speed_km_h, seconds):
    config = WirelessConfig(fading="none", speed_km_h=speed_km_h)
    channel = Channel(4000, config, np.random.default_rng(0))
    before = channel.shadowing_db
    for _ in range(4):  # four rounds of a quarter each: the same correlation as one step of all of it
        channel.step(seconds / 4)
    after = channel.shadowing_db
    expected = math.exp(-speed_km_h / 3.6 * seconds / 50.0)  # Gudmundson, 50 m decorrelation distance
    assert np.corrcoef(before, after)[0, 1] == pytest.approx(expected, abs=0.03)
    assert before.std() == pytest.approx(8.0, rel=0.05) and after.std() == pytest.approx(8.0, rel=0.05)


def test_a_client_that_does_not_move_keeps_its_shadowing():
    channel = Channel(5, WirelessConfig(speed_km_h=0.0), np.random.default_rng(0))
    before = channel.shadowing_db
    channel.step(100.0)
    np.testing.assert_array_equal(channel.shadowing_db, before)
    moving = Channel(5, WirelessConfig(), np.random.default_rng(0))
    moving.step(0.0)  # no time, no distance
    np.testing.assert_array_equal(moving.shadowing_db, before)
    assert not np.array_equal(Channel(5, WirelessConfig(shadowing_db=0.0), np.random.default_rng(0)).shadowing_db,
                              before)


@pytest.mark.parametrize("kwargs, message", [
    ({"shadowing_db": -1.0}, "shadowing_db=-1.0 is out of range; allowed: [0.0, 30.0]"),
    ({"shadowing_decorrelation_m": 0.0}, "shadowing_decorrelation_m=0.0 is out of range"),
    ({"speed_km_h": 1000.0}, "speed_km_h=1000.0 is out of range; allowed: [0.0, 500.0]"),
    ({"link_trace": ""}, "link_trace='' is invalid; allowed: None or the path of a folder"),
])
def test_shadowing_and_trace_options_are_checked_by_name(kwargs, message):
    with pytest.raises(ConfigError) as error:
        WirelessConfig(**kwargs)
    assert message in str(error.value)
