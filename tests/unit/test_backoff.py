"""The one retry policy: a config struct and its backoff, used by drivers, supervision, the recorder and the uplink."""

from __future__ import annotations

import random

import msgspec
import pytest

from gateway.backoff import BackoffPolicy
from gateway.config import parse


def test_the_policy_doubles_to_its_maximum_with_equal_jitter() -> None:
    policy = msgspec.convert({"initial": 0.5, "maximum": 4.0}, BackoffPolicy)
    backoff = policy.backoff(rng=random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    steps = [backoff.next() for _ in ceilings]
    assert all(c / 2 <= s <= c for s, c in zip(steps, ceilings, strict=True))  # never below half the step
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5
    again = policy.backoff(rng=random.Random(7))
    assert [again.next() for _ in ceilings] == steps  # seeded: reproducible


def test_a_wrong_policy_is_refused_with_its_key() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"initial": 5.0, "maximum": 1.0}, BackoffPolicy)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"initial": 0.0}, BackoffPolicy)
    with pytest.raises(Exception, match=r"supervision\.backoff\.maximum"):
        parse({"supervision": {"backoff": {"maximum": -1.0}}})
    assert parse({"supervision": {"writer_stall": 5.0}}).supervision.writer_stall == 5.0
