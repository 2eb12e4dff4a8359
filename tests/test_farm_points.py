"""``space.check_point``: the driver's last check of a proposed point before it reaches a pilot."""
from __future__ import annotations

import math

import pytest

from emews_py.space import check_point

SPACE = {"source": "/abs/space.R", "params": [
    {"id": "n", "type": "integer", "lower": 1, "upper": 20, "trafo": False},
    {"id": "lr", "type": "numeric", "lower": -4, "upper": -1, "trafo": True},
    {"id": "opt", "type": "discrete", "values": ["sgd", "adam"]},
    {"id": "mom", "type": "numeric", "lower": 0, "upper": 1, "requires": True}]}
OK = {"n": 3, "lr": 0.001, "opt": "sgd"}


def test_a_point_inside_passes():
    assert check_point(SPACE, OK) is None
    assert check_point(SPACE, dict(OK, mom=0.5)) is None  # active under `requires`


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_integer_is_rejected_not_an_overflow(value):
    why = check_point(SPACE, dict(OK, n=value))
    assert why and "'n'" in why and "not a finite number" in why and "/abs/space.R" in why


def test_missing_parameter_is_rejected_naming_it_and_the_trafo_cause():
    why = check_point(SPACE, {"n": 3, "opt": "sgd"})
    assert why and "'lr'" in why and "/abs/space.R" in why and "missing" in why
    assert "trafo" in why and "NA/NaN" in why


@pytest.mark.parametrize("value", [None, math.nan])
def test_nan_or_null_from_a_trafo_is_rejected(value):
    why = check_point(SPACE, dict(OK, lr=value))
    assert why and "'lr'" in why and "/abs/space.R" in why and "trafo" in why


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_value_is_rejected_even_where_a_trafo_applies(value):
    why = check_point(SPACE, dict(OK, lr=value))
    assert why and "'lr'" in why and "not a finite number" in why and "/abs/space.R" in why
    assert "trafo" in why
