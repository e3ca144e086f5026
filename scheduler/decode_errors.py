"""lowcarb's own words for a body that does not decode: why it is not JSON, which field is off.

The decoders (msgspec on the wire, ``json`` for preemption) say what went wrong in their own
words, which change between releases. The error path asks again here instead: the bytes are
checked for UTF-8 and parsed with the standard library to place the first fault, and a body that
is JSON but not the expected type is walked against that type (``msgspec.inspect``) to name the
first field that does not fit, e.g. ``Pod.spec.containers: expected an array or null, got a
number``. Only called once a decode has failed, so the hot path never pays for it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import msgspec.inspect as mi

_ARRAYS = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType, mi.TupleType)
_NESTED = "nested too deeply"


class _NotJsonNumber(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NotJsonNumber(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJsonNumber(f"the number {text[:24]} is out of range")
    return value


def json_problem(body: bytes) -> str:
    """Why ``body`` is not one JSON value, in a few words with the byte, line and column."""
    if not body.strip():
        return "the body is empty"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"byte 0x{body[exc.start]:02x} at offset {exc.start} is not UTF-8"
    try:
        json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        return _NESTED
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return f"it ends early, at byte {len(body)} (truncated?)"
        snippet = text[exc.pos : exc.pos + 12]
        return f"unexpected {snippet!r} at line {exc.lineno}, column {exc.colno}"
    except _NotJsonNumber as exc:  # NaN, 1e400: Python's json takes them, the decoders do not
        return str(exc)
    return "it is not strict JSON (a lone UTF-16 surrogate escape?)"


def _kind(value: Any) -> str:
    """A JSON value's kind with its article, as a user would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "a JSON object"


def _expected(t: mi.Type) -> str:
    if isinstance(t, mi.UnionType):
        return " or ".join(_expected(option) for option in t.types)
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.BoolType):
        return "a boolean"
    if isinstance(t, mi.IntType):
        return "an integer"
    if isinstance(t, mi.FloatType):
        return "a number"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, _ARRAYS):
        return "an array"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(json.dumps(v) for v in t.values)
    return "a JSON object"


def _fits_shape(value: Any, t: mi.Type) -> bool:
    """Whether ``value`` has the JSON kind ``t`` wants (contents not checked)."""
    if isinstance(t, mi.AnyType | mi.RawType):
        return True
    if isinstance(t, mi.NoneType):
        return value is None
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, _ARRAYS):
        return isinstance(value, list)
    if isinstance(t, mi.LiteralType):
        return value in t.values
    if isinstance(t, mi.StructType | mi.DictType | mi.TypedDictType | mi.DataclassType):
        return isinstance(value, dict)
    return True  # a type this walk does not model: let it pass


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mismatch(value: Any, t: mi.Type, path: str) -> tuple[str, str, str] | None:
    """``(path, expected, got)`` of the first place ``value`` does not fit ``t``, or None."""
    if isinstance(t, mi.UnionType):
        for option in t.types:
            if _fits_shape(value, option):
                return _mismatch(value, option, path)
        return path, _expected(t), _kind(value)
    if not _fits_shape(value, t):
        return path, _expected(t), _kind(value)
    if isinstance(t, _ARRAYS) and not isinstance(t, mi.TupleType):
        for i, item in enumerate(value):
            found = _mismatch(item, t.item_type, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(t, mi.DictType):
        for key, item in value.items():
            found = _mismatch(item, t.value_type, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(t, mi.StructType | mi.TypedDictType | mi.DataclassType):
        for field in t.fields:
            where = _join(path, field.encode_name)
            if field.encode_name in value:
                found = _mismatch(value[field.encode_name], field.type, where)
                if found:
                    return found
            elif field.required:
                return where, _expected(field.type), "nothing (missing)"
    return None


def shape_problem(data: Any, typ: Any) -> str | None:
    """``field.path: expected X, got Y`` for the first field of ``data`` that does not fit
    ``typ`` (a msgspec-decodable type), or None when every field this walk models fits."""
    found = _mismatch(data, mi.type_info(typ), "")
    if found is None:
        return None
    path, expected, got = found
    return f"{path + ': ' if path else ''}expected {expected}, got {got}"


_any = msgspec.json.Decoder()


def describe(subject: str, kind: str, typ: Any, body: bytes, exc: BaseException) -> str:
    """One line for a failed decode of ``body`` as ``typ``: ``<subject> is not valid JSON: ...``
    or ``<subject> is not <kind>: <field>: expected ..., got ...``."""
    if isinstance(exc, RecursionError):
        return f"{subject} is not valid JSON: {_NESTED}"
    if isinstance(exc, msgspec.ValidationError):
        try:
            data = _any.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass  # the type check stopped before the syntax error: report the syntax
        else:
            why = shape_problem(data, typ)
            # a constraint this walk does not model: the decoder's own words are all we have
            return f"{subject} is not {kind}: {why or exc}"
    return f"{subject} is not valid JSON: {json_problem(body)}"
