from __future__ import annotations

from relay.state.ratelimit import RateLimiter


def test_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0  # per client
    now[0] += 0.5
    assert limiter.take("a") == 0


def test_off_by_default() -> None:
    assert not RateLimiter(0, 100).enabled
