"""Projections on GGUF-quantized weights kept in their own block formats (no dequantized copy).

A `QuantWeight` is a weight matrix [out, in] made of one or more row segments, each the raw blocks of a
GGUF tensor (Q4_K, Q6_K, Q5_0 or Q8_0; usually a view of the memory-mapped file) — several when q/k/v or
gate/up are fused and their GGUF tensors use different formats. `QuantLinear` runs it with
saguaro.kernels.quant: int8 activation blocks, integer dot products, every weight block read once for
all rows of a call, and each row's bits independent of the other rows (so speculative verification stays
exact). The model it computes is the GGUF model, as llama.cpp computes it (int8 activation blocks).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import torch

from saguaro.kernels import quant
from saguaro.kernels.threads import kernel_threads


@dataclasses.dataclass(frozen=True)
class QuantSegment:
    """Rows of a weight as GGUF blocks: `blocks` uint8 [rows, row_bytes] of one GGML type. `release`, when
    set (a view of a memory-mapped file), drops the blocks' file pages from the resident set once a repacked
    copy exists; they come back from the page cache if the blocks are read again."""

    blocks: torch.Tensor
    ggml_type: int
    rows: int
    release: Optional[Callable[[], None]] = dataclasses.field(default=None, compare=False, repr=False)


class QuantWeight:
    """A quantized weight [out, in]: row segments of GGUF blocks, stacked in order."""

    def __init__(self, segments: list[QuantSegment], in_features: int) -> None:
        if not segments:
            raise ValueError("QuantWeight needs at least one segment")
        self.segments = list(segments)
        self.in_features = int(in_features)
        for s in self.segments:
            want = s.rows * quant.row_bytes(s.ggml_type, self.in_features)
            if s.blocks.dtype != torch.uint8 or s.blocks.numel() != want or not s.blocks.is_contiguous():
                raise ValueError(f"segment of {s.rows} rows of type {s.ggml_type}: expected {want} contiguous uint8 "
                                 f"bytes, got {s.blocks.numel()} {s.blocks.dtype}")
        # read by every projection call (its output's shape): summed once
        self._out_features = sum(s.rows for s in self.segments)

    @classmethod
    def from_blocks(cls, blocks: torch.Tensor, ggml_type: int | str, rows: int, in_features: int,
                    release: Optional[Callable[[], None]] = None) -> "QuantWeight":
        """One segment: `rows` rows of `in_features` values of `ggml_type` in `blocks` (uint8); `release` as
        in QuantSegment."""
        return cls([QuantSegment(blocks.reshape(int(rows), -1), quant.type_id(ggml_type), int(rows), release)],
                   in_features)

    @classmethod
    def cat(cls, parts: list["QuantWeight"]) -> "QuantWeight":
        """The rows of `parts` stacked (q/k/v, gate/up): their segments, no copy."""
        k = {p.in_features for p in parts}
        if len(k) != 1:
            raise ValueError(f"cannot stack quantized weights with different in_features {sorted(k)}")
        return cls([s for p in parts for s in p.segments], k.pop())

    @property
    def out_features(self) -> int:
        return self._out_features

    @property
    def shape(self) -> torch.Size:
        return torch.Size([self.out_features, self.in_features])

    @property
    def nbytes(self) -> int:
        return sum(s.blocks.numel() for s in self.segments)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The fp32 weights of rows `ids` (an embedding lookup), shape [*ids.shape, in]."""
        flat = ids.reshape(-1).long().cpu()
        out = torch.empty((flat.numel(), self.in_features), dtype=torch.float32)
        start = 0
        for s in self.segments:
            hit = ((flat >= start) & (flat < start + s.rows)).nonzero().flatten()
            if hit.numel():
                picked = s.blocks.index_select(0, flat[hit] - start).contiguous()
                out[hit] = quant.dequantize(picked, s.ggml_type, hit.numel(), self.in_features)
            start += s.rows
        return out.reshape(*ids.shape, self.in_features)

    def dequantize(self) -> torch.Tensor:
        """All of W as fp32 [out, in]."""
        return torch.cat([quant.dequantize(s.blocks, s.ggml_type, s.rows, self.in_features) for s in self.segments])

    def select_rows(self, ids: torch.Tensor) -> "QuantWeight":
        """A weight of the rows `ids` only (copies of their blocks), each row's blocks unchanged."""
        flat = ids.reshape(-1).long().cpu()
        runs: list[tuple[int, list[torch.Tensor]]] = []  # one segment per run of a format (a chunked head)
        start = 0
        for s in self.segments:
            hit = flat[(flat >= start) & (flat < start + s.rows)]
            if hit.numel():
                picked = s.blocks.index_select(0, hit - start)
                if runs and runs[-1][0] == s.ggml_type:
                    runs[-1][1].append(picked)
                else:
                    runs.append((s.ggml_type, [picked]))
            start += s.rows
        segs = [QuantSegment(torch.cat(parts).contiguous(), t, sum(p.shape[0] for p in parts)) for t, parts in runs]
        if sum(s.rows for s in segs) != flat.numel() or (flat.numel() > 1 and not bool((flat[1:] > flat[:-1]).all())):
            raise ValueError("select_rows: ids must be distinct, in range and increasing")
        return QuantWeight(segs, self.in_features)


class QuantLinear:
    """y = x W^T + b with W a `QuantWeight` (GGUF blocks) and b fp32 (or None).

    Outputs come in x's dtype (``__call__``) or fp32 (``forward_float``: the logits). Same interface as
    saguaro.models.linear.Linear, so the decoder, the MLP and the pruned draft head use it unchanged.
    """

    packed = None  # no bf16 panel copy (DecoderModel checks this for a tied head)

    def __init__(self, weight: QuantWeight, bias: torch.Tensor | None = None, *, repack: bool | None = None) -> None:
        """repack: Q4_K, Q6_K, Q5_0 and Q8_0 segments of a multiple of 16 rows get a 16-column interleaved copy
        (saguaro.kernels.quant.q4k16_repack / q6k16_repack / b16_repack) where the CPU runs its AVX-512
        kernel; same bits, faster per row (Q6_K: 1.2x a decode, 1.4-1.7x at 5 and 16 rows). None: on unless the environment
        sets SAGUARO_QUANT_REPACK=0 (read here, at construction)."""
        if not isinstance(weight, QuantWeight):
            raise TypeError(f"QuantLinear needs a QuantWeight, got {type(weight).__name__}")
        if bias is not None and bias.numel() != weight.out_features:
            raise ValueError(f"bias: expected {weight.out_features} values, got {bias.numel()}")
        self.qweight = weight
        self.bias = bias.detach().float().contiguous() if bias is not None else None
        if repack is None:
            repack = os.environ.get("SAGUARO_QUANT_REPACK", "1").strip() != "0"
        k = weight.in_features
        # the GGUF views stay for the other paths (SAGUARO_CPU_ISA lowered) and row lookups
        self.repacked = []
        for s in weight.segments:
            self.repacked.append(self._repack(s, k) if repack else None)
            if self.repacked[-1] is not None and s.release is not None:
                s.release()  # load peak: each segment's file pages leave as soon as its copy exists
        # every segment borrowed once by the extension: a call exports only x and the output
        self._projection = quant.core().QuantProjection(
            k, [(s.blocks, s.ggml_type, s.rows, p) for s, p in zip(weight.segments, self.repacked)], self.bias)

    @staticmethod
    def _repack(s: QuantSegment, k: int) -> torch.Tensor | None:
        if s.ggml_type == quant.GGML_TYPES["Q4_K"] and quant.q4k16_supported(s.rows, k):
            return quant.q4k16_repack(s.blocks, s.rows, k)
        if s.ggml_type == quant.GGML_TYPES["Q6_K"] and quant.q6k16_supported(s.rows, k):
            return quant.q6k16_repack(s.blocks, s.rows, k)
        # Q8_0 too, since the embedded-broadcast tiles: the 0.5B's head (151936 x 896, one thread) decodes
        # 1.1x slower interleaved (13.6 vs 12.4 ms) but runs 5 rows 1.6x and a 16-branch tree step 2.2x
        # faster (29.9 vs 65.4 ms), and the copy (21% larger) replaces the file pages it came from
        if s.ggml_type in (quant.GGML_TYPES["Q5_0"], quant.GGML_TYPES["Q8_0"]) and quant.b16_supported(
                s.ggml_type, s.rows, k):
            return quant.b16_repack(s.blocks, s.ggml_type, s.rows, k)
        return None

    @property
    def out_features(self) -> int:
        return self.qweight.out_features

    @property
    def projection(self) -> object:
        """The extension's QuantProjection (the borrowed segments), for saguaro.models.decoder_chain."""
        return self._projection

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized W [out, in] in fp32 (computed at each access: for tests and references)."""
        return self.qweight.dequantize()

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantized rows W[ids] (fp32): the embedding lookup of a tied head."""
        return self.qweight.rows(ids)

    def _run(self, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        # bf16 and fp32 inputs go to the extension as they are (it converts bf16 exactly), and a bf16
        # output is rounded there as .to(bfloat16) would: one call instead of three torch operators
        flat = x.dim() == 2  # the common case (rows x features) skips two reshapes, ~1 us each
        x2 = x if flat else x.reshape(-1, x.shape[-1])
        if x2.dtype not in (torch.float32, torch.bfloat16):
            x2 = x2.float()
        x2 = x2.contiguous()
        out = torch.empty((x2.shape[0], self.out_features), dtype=out_dtype)
        if x2.shape[0] > 0:
            self._projection.forward(x2, out, kernel_threads())
        return out if flat else out.reshape(*x.shape[:-1], self.out_features)

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, torch.float32)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16:
            return self._run(x, torch.bfloat16)
        return self.forward_float(x).to(x.dtype)

    def select_rows(self, ids: torch.Tensor) -> "QuantLinear":
        """A projection of the output rows `ids` only (a pruned draft head): each kept output has the bits
        the full projection gives it."""
        bias = self.bias.index_select(0, ids.reshape(-1).long().cpu()) if self.bias is not None else None
        return QuantLinear(self.qweight.select_rows(ids), bias)
