"""The restart decision, on its own: backoff, restart types, intensity, half-open."""

from __future__ import annotations

import random

import pytest

from supervisor import BackoffPolicy, RestartPolicy

NO_JITTER = BackoffPolicy(initial_s=0.5, factor=2.0, max_s=4.0, jitter=0.0)


def test_backoff_grows_exponentially_up_to_the_cap():
    rng = random.Random(1)
    assert [NO_JITTER.delay_s(n, rng) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jitter_stays_within_its_fraction():
    policy = BackoffPolicy(initial_s=1.0, factor=2.0, max_s=100.0, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay_s(3, rng) for _ in range(2000)]
    assert min(delays) >= 3.2 and max(delays) <= 4.8
    assert max(delays) - min(delays) > 1.0  # it does spread


def policy(restart="permanent", max_restarts=3, window_s=10.0):
    return RestartPolicy(restart, NO_JITTER, max_restarts, window_s, recovery_s=30.0)


def decide(p, failed=True, attempt=0, times=(), half_open=False, now=100.0):
    return p.decide(failed=failed, attempt=attempt, restart_times=list(times), half_open=half_open, now=now,
                    rng=random.Random(0))


@pytest.mark.parametrize("restart,failed,action", [
    ("permanent", True, "restart"), ("permanent", False, "restart"),
    ("transient", True, "restart"), ("transient", False, "rest"),
    ("temporary", True, "rest"), ("temporary", False, "rest"),
])
def test_restart_types(restart, failed, action):
    assert decide(policy(restart), failed=failed).action == action


def test_delay_follows_the_streak():
    p = policy()
    assert [decide(p, attempt=a).delay_s for a in range(4)] == [0.5, 1.0, 2.0, 4.0]


def test_intensity_opens_the_circuit():
    p = policy(max_restarts=3, window_s=10.0)
    assert decide(p, times=[95.0, 96.0]).action == "restart"
    d = decide(p, times=[95.0, 96.0, 97.0])
    assert d.action == "fail" and d.delay_s == 30.0 and "3 restarts" in d.reason
    assert decide(p, times=[80.0, 85.0, 97.0]).action == "restart"  # old restarts left the window


def test_a_failed_half_open_try_fails_again_at_once():
    d = decide(policy(), half_open=True)
    assert d.action == "fail" and d.delay_s == 30.0


def test_a_clean_exit_restarts_without_counting_toward_the_intensity():
    p = policy(max_restarts=3, window_s=10.0)
    d = decide(p, failed=False, times=[95.0, 96.0, 97.0])  # a crash now would open the circuit
    assert d.action == "restart" and not d.counts and "not counted" in d.reason
    assert decide(p, failed=True).counts


def test_a_clean_exit_keeps_the_backoff_of_its_streak():
    p = policy()
    assert [decide(p, failed=False, attempt=a).delay_s for a in range(4)] == [0.5, 1.0, 2.0, 4.0]


def test_a_clean_exit_of_a_half_open_try_does_not_open_the_circuit_again():
    assert decide(policy(), failed=False, half_open=True).action == "restart"
