import math

import pytest

from nofrog_core.schedules import SCHEDULES, ConstantSchedule, CosineSchedule, FinchSchedule, build_schedule


def test_finch_follows_the_published_rule_step_by_step():
    schedule = FinchSchedule(base_lr=2e-5, lr_max=5e-5, ema_loss=4.0, alpha=0.9)
    ema = 4.0
    for loss in [3.0, 1.0, 0.5, 0.01, 0.01, 0.01, 9.0]:
        ema = 0.9 * ema + 0.1 * loss  # the current batch enters the EMA before its step
        assert schedule.next_lr(loss) == pytest.approx(min(2e-5 / math.sqrt(ema), 5e-5), rel=1e-12)
        assert schedule.ema_loss == pytest.approx(ema)


def test_finch_cap_applies_once_ema_falls_below_the_threshold():
    schedule = FinchSchedule(base_lr=2e-5, lr_max=5e-5, ema_loss=0.15)  # (2e-5 / 5e-5)^2 = 0.16
    assert schedule.next_lr(0.1) == 5e-5
    high = FinchSchedule(base_lr=2e-5, lr_max=5e-5, ema_loss=0.17)
    assert high.next_lr(0.17) < 5e-5


def test_finch_refuses_a_missing_or_nan_loss():
    schedule = FinchSchedule(2e-5, 5e-5, 1.0)
    with pytest.raises(ValueError):
        schedule.next_lr(float("nan"))


def test_finch_state_round_trips():
    a = FinchSchedule(2e-5, 5e-5, 3.0)
    a.next_lr(2.0)
    b = FinchSchedule(2e-5, 5e-5, 99.0)
    b.load_state_dict(a.state_dict())
    assert b.next_lr(1.0) == a.next_lr(1.0)


def test_constant_with_linear_warmup():
    schedule = ConstantSchedule(1e-4, warmup_steps=4)
    assert [schedule.next_lr() for _ in range(6)] == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4, 1e-4])


def test_cosine_decays_from_peak_to_zero():
    schedule = CosineSchedule(1e-4, total_steps=11, warmup_steps=1)
    lrs = [schedule.next_lr() for _ in range(11)]
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[5] == pytest.approx(5e-5)  # half way through the decay
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_build_schedule_needs_the_initial_loss_for_finch():
    with pytest.raises(ValueError, match="mean training loss"):
        build_schedule("finch", base_lr=2e-5, lr_max=5e-5, total_steps=10)
    assert isinstance(build_schedule("finch", base_lr=2e-5, lr_max=5e-5, ema_loss=2.0), FinchSchedule)
    with pytest.raises(KeyError, match="registered"):
        build_schedule("warmup_stable_decay", lr=1e-4)


def test_every_schedule_round_trips_its_state():
    for name in SCHEDULES:
        a = build_schedule(name, lr=1e-3, base_lr=1e-3, lr_max=2e-3, ema_loss=3.0, total_steps=10, warmup_steps=2)
        first = [a.next_lr(2.0) for _ in range(3)]
        b = build_schedule(name, lr=1e-3, base_lr=1e-3, lr_max=2e-3, ema_loss=99.0, total_steps=10, warmup_steps=2)
        b.load_state_dict(a.state_dict())
        assert [b.next_lr(2.0) for _ in range(3)] == [a.next_lr(2.0) for _ in range(3)], name
        assert first
