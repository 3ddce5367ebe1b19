"""Argument conversion and validation shared by saguaro.kernels and its reference.

Per-row parameters may be a scalar (same for every row), a list/tuple with one value per row, or a
1-D tensor with one value per row. Anything else raises ValueError saying what is wrong.
"""
from __future__ import annotations

import enum
import numbers
from typing import Sequence, Union

import numpy as np
import torch

RowParam = Union[int, float, bool, Sequence[Union[int, float, bool]], torch.Tensor]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class Purpose(enum.IntEnum):
    """What a keyed uniform is drawn for (docs/contracts.md §1)."""

    ACCEPT = 1
    RESIDUAL = 2
    DRAFT = 3
    FAST_BACKUP = 4


# field -> (torch dtype, integer?, bounds for integers)
_FIELDS = {
    "temperature": (torch.float32, False, None),
    "top_k": (torch.int32, True, _INT32),
    "top_p": (torch.float32, False, None),
    "saguaro_c": (torch.float32, False, None),
    "saguaro_topn": (torch.int32, True, _INT32),
    "positions": (torch.int64, True, _INT64),
    "num_draft": (torch.int32, True, _INT32),
    "deterministic": (torch.uint8, True, (0, 1)),
}


def _is_number(v) -> bool:
    return isinstance(v, (numbers.Real, np.number, np.bool_)) and not isinstance(v, (str, bytes))


def _to_tensor(name: str, value, rows: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.dim() == 0:
            t = t.reshape(1).expand(rows)
        if t.dim() != 1 or t.shape[0] != rows:
            raise ValueError(f"{name}: expected a scalar or one value per row ({rows}), got a tensor of shape {list(t.shape)}")
        if t.is_complex():
            raise ValueError(f"{name}: complex values are not allowed")
        return t.cpu()
    if _is_number(value):
        try:
            if isinstance(value, (float, np.floating)):
                return torch.tensor([float(value)], dtype=torch.float64).expand(rows)
            return torch.tensor([int(value)], dtype=torch.int64).expand(rows)
        except (OverflowError, RuntimeError, ValueError, TypeError) as e:
            raise ValueError(f"{name}: value out of range ({e})") from None
    if isinstance(value, (list, tuple)):
        if len(value) != rows:
            raise ValueError(f"{name}: expected one value per row ({rows}), got {len(value)}")
        if not all(_is_number(v) for v in value):
            raise ValueError(f"{name}: every value must be a number")
        if any(isinstance(v, (float, np.floating)) for v in value):
            return torch.tensor([float(v) for v in value], dtype=torch.float64)
        try:
            return torch.tensor([int(v) for v in value], dtype=torch.int64)
        except (OverflowError, RuntimeError, ValueError, TypeError) as e:
            raise ValueError(f"{name}: value out of range ({e})") from None
    raise ValueError(f"{name}: expected a number, a list with one number per row, or a 1-D tensor; got {type(value).__name__}")


def _convert(name: str, value, rows: int) -> torch.Tensor:
    dtype, integer, bounds = _FIELDS[name]
    t = _to_tensor(name, value, rows)
    if name == "deterministic":
        if t.dtype == torch.bool:
            return t.to(torch.uint8).contiguous()
        t = t.to(torch.float64)
        if bool(torch.isnan(t).any()):
            raise ValueError(f"{name}: NaN is not a boolean")
        return (t != 0).to(torch.uint8).contiguous()
    if integer:
        lo, hi = bounds
        if t.dtype == torch.bool:
            t = t.to(torch.int64)
        if t.dtype == torch.uint64:
            raise ValueError(f"{name}: expected int64 or a smaller integer dtype, got uint64")
        if t.dtype.is_floating_point:
            t = t.to(torch.float64)
            if bool((~torch.isfinite(t)).any()) or bool((t != torch.round(t)).any()):
                raise ValueError(f"{name}: values must be integers")
            if bool(((t < lo) | (t >= float(hi) + 1.0)).any()):
                raise ValueError(f"{name}: values must be in [{lo}, {hi}]")
            return t.to(dtype).contiguous()
        t = t.to(torch.int64)
        if bool(((t < lo) | (t > hi)).any()):
            raise ValueError(f"{name}: values must be in [{lo}, {hi}]")
        return t.to(dtype).contiguous()
    return t.to(torch.float64).to(dtype).contiguous()


def as_rows(rows: int, **fields) -> dict[str, torch.Tensor]:
    """Convert each named per-row parameter to a contiguous CPU tensor of `rows` values (its kernel dtype)."""
    return {name: _convert(name, value, rows) for name, value in fields.items()}


def _seed_tensor(name: str, value, rows: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.dim() == 0:
            t = t.reshape(1).expand(rows)
        if t.dim() != 1 or t.shape[0] != rows:
            raise ValueError(f"{name}: expected a scalar or one value per row ({rows}), got a tensor of shape {list(t.shape)}")
        if t.dtype == torch.uint64:
            return t.cpu().contiguous().view(torch.int64)
        if t.dtype == torch.int64:
            return t.cpu().contiguous()  # the int64 bit pattern is the uint64 value
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{name}: expected an integer tensor, got {t.dtype}")
        t = t.cpu().to(torch.int64)
        if bool((t < 0).any()):
            raise ValueError(f"{name}: values must be in [0, 2**64)")
        return t.contiguous()
    vals = [value] * rows if not isinstance(value, (list, tuple)) else list(value)
    if len(vals) != rows:
        raise ValueError(f"{name}: expected one value per row ({rows}), got {len(vals)}")
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}: values must be integers in [0, 2**64), got {type(v).__name__}")
        v = int(v)
        if not 0 <= v < 2**64:
            raise ValueError(f"{name}: {v} is outside [0, 2**64)")
        out.append(v - 2**64 if v >= 2**63 else v)
    return torch.tensor(out, dtype=torch.int64).reshape(rows)


def as_seed_rows(rows: int, seed, stream) -> tuple[torch.Tensor, torch.Tensor]:
    """(seeds, streams) as int64 CPU tensors carrying the uint64 bit patterns."""
    return _seed_tensor("seed", seed, rows), _seed_tensor("stream", stream, rows)


def check_logits(t, name: str, ndim: int) -> None:
    """A float32 torch tensor with `ndim` dimensions and a non-empty last dimension."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise ValueError(f"{name}: expected dtype torch.float32, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {list(t.shape)}")
    if t.shape[-1] < 1:
        raise ValueError(f"{name}: the vocabulary dimension is empty")
    if ndim == 3 and t.shape[1] < 1:
        raise ValueError(f"{name}: dimension 1 (K + 1) must be >= 1")


def as_fanout(fanout, batch: int, positions: int) -> torch.Tensor:
    """F_j per row and position as an int32 CPU tensor [batch, positions]; a flat list of `positions`
    values applies to every row."""
    if isinstance(fanout, torch.Tensor):
        t = fanout.detach().cpu()
    elif isinstance(fanout, (list, tuple)):
        try:
            t = torch.tensor(fanout)
        except (TypeError, ValueError, RuntimeError, OverflowError) as e:
            raise ValueError(f"fanout: not a list of integers ({e})") from None
    else:
        raise ValueError(f"fanout: expected a list or tensor of K + 1 integers, got {type(fanout).__name__}")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"fanout: expected integers, got {t.dtype}")
    if t.dim() == 1:
        t = t.reshape(1, -1).expand(batch, -1)
    if t.dim() != 2 or tuple(t.shape) != (batch, positions):
        raise ValueError(f"fanout: expected K + 1 = {positions} values or shape [{batch}, {positions}], got {list(t.shape)}")
    t = t.to(torch.int64)
    if bool(((t < 0) | (t > _INT32[1])).any()):
        raise ValueError("fanout: values must be >= 0 (and fit in int32)")
    return t.to(torch.int32).contiguous()
