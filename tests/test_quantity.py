"""Kubernetes resource quantities parse exactly and round the way the API server does."""

from __future__ import annotations

from fractions import Fraction

import pytest

from scheduler.quantity import QuantityError, int_value, milli_value, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Fraction(0)),
        ("2", Fraction(2)),
        ("500m", Fraction(1, 2)),
        ("1.5", Fraction(3, 2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("+3", Fraction(3)),
        ("-250m", Fraction(-1, 4)),
        ("2e3", Fraction(2000)),
        ("2E3", Fraction(2000)),
        ("1e-3", Fraction(1, 1000)),
        ("1.5e2", Fraction(150)),
        ("100Mi", Fraction(100 * 2**20)),
        ("16Gi", Fraction(16 * 2**30)),
        ("1.5Gi", Fraction(1610612736)),
        ("3Ki", Fraction(3072)),
        ("2Ti", Fraction(2 * 2**40)),
        ("1Pi", Fraction(2**50)),
        ("1Ei", Fraction(2**60)),
        ("3758010052Ki", Fraction(3758010052 * 1024)),
        ("1k", Fraction(1000)),
        ("64M", Fraction(64 * 10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),  # exa, not an exponent
        ("100n", Fraction(1, 10**7)),
        ("250u", Fraction(1, 4000)),
        ("0.1", Fraction(1, 10)),  # exact: no float rounding
        ("123456789012345678901", Fraction(123456789012345678901)),
    ],
)
def test_parse_exact(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        ("500m", 500),
        ("1.5", 1500),
        ("8", 8000),
        ("0.0001", 1),  # rounded up like resource.Quantity.MilliValue
        ("1001u", 2),
        ("2e3", 2_000_000),
        ("-500m", -500),
    ],
)
def test_milli_value_rounds_up(text: str, milli: int) -> None:
    assert milli_value(text) == milli


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        ("64Gi", 64 * 2**30),
        ("1Ti", 2**40),
        ("4", 4),
        ("0.5", 1),  # rounded up like resource.Quantity.Value
        ("1500m", 2),
        ("1001m", 2),
        ("1000m", 1),
        ("129M", 129_000_000),
    ],
)
def test_int_value_rounds_up(text: str, whole: int) -> None:
    assert int_value(text) == whole


def test_surrounding_whitespace_is_tolerated() -> None:
    assert milli_value(" 250m ") == 250


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1.2.3", "1Kb", "1 Gi", "Gi", "1ki", "0x10", "1e", "1e400", "--1", "1mi", "m"],
)
def test_not_a_quantity(text: str) -> None:
    with pytest.raises(QuantityError) as exc:
        parse_quantity(text)
    message = str(exc.value)
    assert repr(text) in message or repr(text.strip()) in message


def test_error_message_shows_valid_examples() -> None:
    with pytest.raises(QuantityError, match=r"'abc' is not a Kubernetes quantity \(examples: "):
        milli_value("abc")


def test_errors_are_not_cached_as_values() -> None:
    for _ in range(2):  # the parse cache must not turn a failure into a value
        with pytest.raises(QuantityError):
            int_value("12x")
    assert int_value("12") == 12
