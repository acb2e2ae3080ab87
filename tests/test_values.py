"""What counts as a monitored value: accepted types convert exactly, others are refused."""

from __future__ import annotations

import math
import warnings
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from earlystop import Stopper, to_float
from earlystop._core.values import decode_float, encode_float


class HasFloat:
    def __float__(self) -> float:
        return 0.25


class BadFloat:
    def __float__(self) -> float:
        raise ValueError("no number here")


def _grad_scalar() -> torch.Tensor:
    weight = torch.tensor([0.5, 0.25], requires_grad=True)
    return (weight * 2).sum()  # a loss with a grad_fn, as training produces


ACCEPTED: list[tuple[str, Any, float]] = [
    ("int", 3, 3.0),
    ("negative-int", -2, -2.0),
    ("float", 0.125, 0.125),
    ("float-nan", math.nan, math.nan),
    ("float-inf", math.inf, math.inf),
    ("fraction", Fraction(1, 4), 0.25),
    ("decimal", Decimal("0.375"), 0.375),
    ("dunder-float", HasFloat(), 0.25),
    ("np-float64", np.float64(0.5), 0.5),
    ("np-float32", np.float32(0.5), 0.5),
    ("np-float16", np.float16(0.5), 0.5),
    ("np-longdouble", np.longdouble(0.5), 0.5),
    ("np-int8", np.int8(-3), -3.0),
    ("np-int64", np.int64(7), 7.0),
    ("np-uint8", np.uint8(200), 200.0),
    ("np-0dim", np.array(0.75), 0.75),
    ("np-one-element", np.array([0.75]), 0.75),
    ("np-one-element-2d", np.array([[0.75]], dtype=np.float32), 0.75),
    ("np-int-array", np.array([4]), 4.0),
    ("tensor-0dim", torch.tensor(0.5), 0.5),
    ("tensor-one-element", torch.tensor([[0.5]]), 0.5),
    ("tensor-requires-grad", torch.tensor(0.5, requires_grad=True), 0.5),
    ("tensor-one-element-grad", torch.tensor([0.5], requires_grad=True), 0.5),
    ("tensor-with-grad-fn", _grad_scalar(), 1.5),
    ("tensor-parameter", torch.nn.Parameter(torch.tensor([0.25])), 0.25),
    ("tensor-float16", torch.tensor(0.5, dtype=torch.float16), 0.5),
    ("tensor-bfloat16", torch.tensor(0.5, dtype=torch.bfloat16), 0.5),
    ("tensor-float64", torch.tensor(0.1, dtype=torch.float64), 0.1),
    ("tensor-int", torch.tensor(5), 5.0),
    ("tensor-uint8", torch.tensor([9], dtype=torch.uint8), 9.0),
    ("tensor-nan", torch.tensor(math.nan), math.nan),
]


@pytest.mark.parametrize(
    ("value", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted(value: Any, expected: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "converting a tensor with requires_grad" warning
        result = to_float(value)
        decision = Stopper().step(value)
    assert type(result) is float
    assert result == expected or (math.isnan(result) and math.isnan(expected))
    assert decision.value == result or math.isnan(decision.value)


def test_requires_grad_tensor_is_not_modified() -> None:
    loss = _grad_scalar()
    to_float(loss)
    assert loss.requires_grad
    assert loss.grad_fn is not None


GENERIC = r"^`value` must be a real number or a one-element array or tensor, got {}$"

REJECTED: list[tuple[str, Any, str]] = [
    ("none", None, GENERIC.format("NoneType")),
    ("str", "0.5", GENERIC.format("str")),
    ("bytes", b"0.5", GENERIC.format("bytes")),
    ("bytearray", bytearray(b"1"), GENERIC.format("bytearray")),
    ("bool", True, GENERIC.format("bool")),
    ("complex", 1 + 2j, GENERIC.format("complex")),
    ("object", object(), GENERIC.format("object")),
    ("list", [0.5], GENERIC.format("list")),
    ("dict", {"loss": 0.5}, GENERIC.format("dict")),
    ("bad-dunder-float", BadFloat(), GENERIC.format("BadFloat")),
    ("np-bool", np.bool_(True), r"^`value` must be a real-valued array, got dtype bool$"),
    (
        "np-complex",
        np.complex128(1.0),
        GENERIC.format("complex128"),  # numpy complex128 subclasses complex
    ),
    ("np-str-array", np.array(["a"]), r"^`value` must be a real-valued array, got dtype <U1$"),
    (
        "np-object-array",
        np.array(0.5, dtype=object),
        r"^`value` must be a real-valued array, got dtype object$",
    ),
    (
        "np-multi",
        np.array([0.5, 0.25]),
        r"^`value` must be a one-element array, got an array of shape \(2,\) \(2 elements\)$",
    ),
    (
        "np-empty",
        np.array([]),
        r"^`value` must be a one-element array, got an array of shape \(0,\) \(0 elements\)$",
    ),
    (
        "tensor-multi",
        torch.ones(2, 3),
        r"^`value` must be a one-element tensor, got a tensor of shape \(2, 3\) \(6 elements\)$",
    ),
    (
        "tensor-empty",
        torch.ones(0),
        r"^`value` must be a one-element tensor, got a tensor of shape \(0,\) \(0 elements\)$",
    ),
    (
        "tensor-bool",
        torch.tensor(True),
        r"^`value` must be a real-valued tensor, got dtype torch.bool$",
    ),
    (
        "tensor-complex",
        torch.tensor(1 + 2j),
        r"^`value` must be a real-valued tensor, got dtype torch.complex64$",
    ),
]


@pytest.mark.parametrize(
    ("value", "match"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_rejected(value: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        to_float(value)


def test_rejected_value_leaves_the_stopper_untouched() -> None:
    stopper = Stopper()
    stopper.step(1.0)
    with pytest.raises(TypeError, match=r"^`value` must be .* got str$"):
        stopper.step("0.5")
    with pytest.raises(TypeError, match=r"^`train_loss` must be .* got NoneType$"):
        stopper.step(0.5, train_loss=None)
    assert stopper.step_count == 1
    assert stopper.history.metrics == {}


def test_the_name_in_messages_is_the_argument() -> None:
    with pytest.raises(TypeError, match=r"^`val_loss` must be a real number .* got str$"):
        to_float("x", "val_loss")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(None, None), (0.5, 0.5), (-0.0, -0.0), (math.inf, "inf"), (-math.inf, "-inf")],
)
def test_encode_decode_round_trip(value: float | None, encoded: object) -> None:
    assert encode_float(value) == encoded
    if value is not None:
        assert decode_float(encoded, "x") == value


def test_encode_decode_nan() -> None:
    assert encode_float(math.nan) == "nan"
    assert math.isnan(decode_float("nan", "x"))
    assert decode_float(3, "x") == 3.0


@pytest.mark.parametrize("bad", ["NaN", "1.5", True, None, [1.0]])
def test_decode_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^state entry `best_value` must be a number, got "):
        decode_float(bad, "best_value")
