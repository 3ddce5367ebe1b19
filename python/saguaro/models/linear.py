"""Linear projections: plain (bf16/fp32) and the optional int8 forms for a draft model."""
from __future__ import annotations

import contextlib
import os
import warnings

import torch
import torch.nn.functional as F

from saguaro.kernels import small_gemm as small_linear
from saguaro.kernels.threads import kernel_threads


def _kernel_enabled() -> bool:
    return os.environ.get("SAGUARO_CPU_LINEAR", "").strip().lower() != "torch" and small_linear.available()


class Linear:
    """y = x W^T + b with W [out, in] in the model's dtype.

    bf16 weights on the CPU (when the AVX2 kernel runs) are packed once into saguaro's panel layout
    and run its batch-invariant small-M kernel (saguaro.kernels.small_gemm) at every row count: each
    row's bits do not depend on the other rows, so a K+1-token verification gives exactly the logits
    of one-token decodes (and a prefill of several prompts together gives each the KV of its prefill
    alone). Only the packed copy is kept; ``weight`` unpacks on first use. It beats torch's bf16
    matmul on AVX2 CPUs at every M measured (bench/results/linear.md). Set the environment variable
    SAGUARO_CPU_LINEAR=torch (read at each call) to use torch's F.linear for every call instead.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.bias = bias.contiguous() if bias is not None else None
        self.weight = weight

    @property
    def weight(self) -> torch.Tensor:
        """W [out, in] (unpacked from the panel layout on first use and kept)."""
        if self._weight is None:
            self._weight = self.packed.unpack()
        return self._weight

    @weight.setter
    def weight(self, weight: torch.Tensor) -> None:
        self.packed: small_linear.PackedBf16 | None = None
        self._weight: torch.Tensor | None = weight.contiguous()
        if (weight.dtype == torch.bfloat16 and weight.device.type == "cpu" and weight.dim() == 2
                and weight.numel() > 0 and (self.bias is None or self.bias.dtype == torch.bfloat16)
                and small_linear.available()):
            self.packed = small_linear.pack_bf16(self._weight)
            self._weight = None  # one copy of the weights: the packed one

    @property
    def out_features(self) -> int:
        return int(self.packed.out_features if self.packed is not None else self._weight.shape[0])

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """W[ids]: the embedding lookup of a tied output head, without unpacking the weight."""
        if self._weight is None:
            return self.packed.rows(ids)
        return F.embedding(ids, self._weight)

    def _use_small(self, x: torch.Tensor) -> bool:
        return (self.packed is not None and x.dtype == torch.bfloat16 and x.device.type == "cpu"
                and x.numel() > 0 and _kernel_enabled())

    def _small(self, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.empty((x2.shape[0], self.packed.out_features), dtype=out_dtype)
        small_linear.core().small_gemm_bf16_packed(x2, self.packed.data, self.packed.out_features, self.bias, out,
                                                   kernel_threads(), "auto")
        return out.reshape(*lead, self.packed.out_features)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_small(x):
            return self._small(x, torch.bfloat16)
        return F.linear(x, self.weight, self.bias)

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x).float()``, but straight from the fp32 accumulator when the small-M kernel runs
        (no bf16 rounding and no extra pass over the output: the output head's logits)."""
        if self._use_small(x):
            return self._small(x, torch.float32)
        return self(x).float()

    def select_rows(self, ids: torch.Tensor) -> "Linear":
        """A projection computing only the output rows `ids` (a pruned draft head), with the same
        arithmetic per row, so each kept output has the bits the full projection gives it."""
        bias = self.bias.index_select(0, ids.to(self.bias.device)) if self.bias is not None else None
        return Linear(self.rows(ids), bias)


class Int8Linear(Linear):
    """Weight-only int8 (symmetric, one scale per output row) via torch._weight_int8pack_mm.

    Only for a DRAFT model: it changes the draft's distribution (so acceptance), never the output.
    On AVX2 CPUs saguaro's packed bf16 kernel is now faster at every row count (0.5B decode 65 vs
    80 ms, bench/results/models.md); int8 remains for CPUs where that kernel does not run.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        w = weight.float()
        scales = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self._weight = q
        self.packed = None
        self.scales = scales.to(weight.dtype).contiguous()
        self.bias = bias.contiguous() if bias is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]), self.weight, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], y.shape[-1])

    def select_rows(self, ids: torch.Tensor) -> "Int8Linear":
        """The same int8 rows and scales for the output rows `ids` only."""
        out = Int8Linear.__new__(Int8Linear)
        out._weight = self._weight.index_select(0, ids).contiguous()
        out.packed = None
        out.scales = self.scales.index_select(0, ids).contiguous()
        out.bias = self.bias.index_select(0, ids).contiguous() if self.bias is not None else None
        return out


@contextlib.contextmanager
def _quantized_tensors():
    """Silence torch's deprecation warnings for quantized tensors: the fbgemm kernels behind them are current."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _quantized_engine_ok() -> bool:
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


class DynamicInt8Linear(Linear):
    """int8 weights (symmetric, one scale per output row) times activations quantized at each call
    (torch's fbgemm dynamic linear: one asymmetric 7-bit scale per call, int32 accumulation).

    Only for a DRAFT model: it changes the draft's distribution (so acceptance), never the output.
    Integer multiply-adds pack 32 products per AVX2 instruction against 8 for fp32 FMA, so the
    multi-row forwards of a draft (its trunk and tree steps) cost about half of the bf16 kernel's,
    where that kernel is bound by the FMA rate (bench/results/models.md). Activations get 7 bits
    (torch's reduce_range): with 8, a pair of products can saturate int16 in the AVX2 kernel (errors
    of several units measured on random data). A call's scale depends on all its rows, so unlike
    `Linear` a row's result depends on the other rows of the call: nothing relies on that for a draft.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        if weight.device.type != "cpu":
            raise ValueError(f"int8='dynamic' runs on the CPU only (torch's fbgemm kernels); the weights are on "
                             f"{weight.device}: load the draft with int8=False or 'weight' on this device")
        if not _quantized_engine_ok():
            raise RuntimeError("int8='dynamic' needs torch's x86/fbgemm quantized engine, which this torch build "
                               f"lacks (engines: {torch.backends.quantized.supported_engines}); use int8='weight'")
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1).clamp_min(1e-12) / 127.0).double()
        with _quantized_tensors():
            qw = torch.quantize_per_channel(w, scales, torch.zeros(w.shape[0], dtype=torch.int64), 0, torch.qint8)
        self._init_packed(qw, bias.detach().float() if bias is not None else None, weight.dtype)

    def _init_packed(self, qw: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        self.params = torch.ops.quantized.linear_prepack(qw, bias)  # the only copy of the weights
        self.packed = None
        self._weight = None
        self.bias = bias
        self.dtype = dtype
        self._out = int(qw.shape[0])

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized W [out, in] in the model's dtype (computed at each access)."""
        return self._qweight().dequantize().to(self.dtype)

    @weight.setter
    def weight(self, weight: torch.Tensor) -> None:
        raise AttributeError("a DynamicInt8Linear's weights are fixed at construction")

    def _qweight(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """The int8 weight as a per-row quantized tensor (only the rows `ids` when given)."""
        with _quantized_tensors():
            qw = torch.ops.quantized.linear_unpack(self.params)[0]
            if ids is None:
                return qw
            return torch._make_per_channel_quantized_tensor(
                qw.int_repr().index_select(0, ids), qw.q_per_channel_scales().index_select(0, ids),
                qw.q_per_channel_zero_points().index_select(0, ids), 0)

    @property
    def out_features(self) -> int:
        return self._out

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self._qweight(ids).dequantize().to(self.dtype)

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).float().contiguous(), self.params, True)
        return y.reshape(*shape[:-1], self._out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_float(x).to(x.dtype)

    def select_rows(self, ids: torch.Tensor) -> "DynamicInt8Linear":
        """The same int8 rows and scales for the output rows `ids` only (each kept row's weights are
        unchanged; its outputs still depend on the call's activation scale, as they always do)."""
        out = DynamicInt8Linear.__new__(DynamicInt8Linear)
        bias = self.bias.index_select(0, ids) if self.bias is not None else None
        out._init_packed(self._qweight(ids), bias, self.dtype)
        return out


def linear_class(int8: bool | str | None) -> type[Linear]:
    """The projection class of an int8 setting: False/None plain, True or "weight" weight-only int8,
    "dynamic" int8 weights and activations (drafts only); ValueError for anything else."""
    if int8 is None or int8 is False:
        return Linear
    if int8 is True or int8 == "weight":
        return Int8Linear
    if int8 == "dynamic":
        return DynamicInt8Linear
    raise ValueError(f"int8 must be False, True / 'weight' (weight-only int8) or 'dynamic' (int8 weights and "
                     f"activations), got {int8!r}")
