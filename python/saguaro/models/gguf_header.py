"""The header of a GGUF file (its metadata values and its tensor table), read in one pass.

``gguf.GGUFReader`` builds a numpy view for each element of every metadata array: about 7 s for a
Qwen2.5 file (its tokenizer's 151,936 tokens and 151,387 merges, two cores, measured), 13 of the
15.5 s a quantized load of the 1.5B took. This reads the same header straight into Python values in
a few tenths of a second; gguf-py still names the types and sizes (``GGMLQuantizationType``,
``GGUFValueType``, ``GGML_QUANT_SIZES``), and ``tests/models/test_gguf_header.py`` checks it against
gguf-py's reader. The tensors' bytes stay in the file: ``saguaro.models.gguf_file`` maps them.
"""
from __future__ import annotations

import dataclasses
import functools
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

_MAGIC = b"GGUF"
# struct codes of the fixed-size metadata value types (arrays of them are read with numpy in one go)
_SCALAR = {GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
           GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?",
           GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d"}
_DEFAULT_ALIGNMENT = 32
_U64 = struct.Struct("<Q")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table."""

    name: str
    tensor_type: GGMLQuantizationType
    #: dimensions innermost first, as GGUF (and gguf-py's ReaderTensor.shape) lists them: [hidden, vocab]
    shape: tuple[int, ...]
    #: absolute byte offset of the data in the file
    data_offset: int
    n_bytes: int


@dataclasses.dataclass
class GGUFHeader:
    """What a GGUF file says before its tensor data."""

    version: int
    #: metadata key -> value: str, int, float, bool, or a list of those for an array
    fields: dict[str, Any]
    tensors: list[TensorInfo]


class _Cursor:
    """Little-endian reads from a buffer; ValueError past its end."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def take(self, code: str) -> Any:
        size = struct.calcsize(code)
        if self.pos + size > len(self.buf):
            raise ValueError("the GGUF header ends early")
        (value,) = struct.unpack_from("<" + code, self.buf, self.pos)
        self.pos += size
        return value

    def skip(self, n: int) -> int:
        """Steps over n bytes; returns where they began."""
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("the GGUF header ends early")
        start, self.pos = self.pos, self.pos + n
        return start

    def bytes(self, n: int) -> bytes:
        start = self.skip(n)
        return self.buf[start:self.pos]

    def string(self) -> str:
        return self.bytes(self.take("Q")).decode("utf-8")

    def _strings(self, count: int) -> list[str]:
        # 300,000 strings per Qwen file: one bounds check per string and no method calls in the loop
        # halve the time of [self.string() for ...]
        buf, pos, end, length = self.buf, self.pos, len(self.buf), _U64.unpack_from
        out = []
        append = out.append
        for _ in range(count):
            if pos + 8 > end:
                raise ValueError("the GGUF header ends early")
            (n,) = length(buf, pos)
            pos += 8
            if pos + n > end:
                raise ValueError("the GGUF header ends early")
            append(buf[pos:pos + n].decode("utf-8"))
            pos += n
        self.pos = pos
        return out

    def skip_array(self) -> None:
        """Steps over an array value without building it (the tensor table is after the tokenizer's)."""
        item, count = GGUFValueType(self.take("I")), self.take("Q")
        if item in _SCALAR:
            self.skip(struct.calcsize(_SCALAR[item]) * count)  # no copy of the token types' 600 KB
        elif item == GGUFValueType.STRING:
            buf, pos, end, length = self.buf, self.pos, len(self.buf), _U64.unpack_from
            for _ in range(count):
                if pos + 8 > end:
                    raise ValueError("the GGUF header ends early")
                pos += 8 + length(buf, pos)[0]
            if pos > end:
                raise ValueError("the GGUF header ends early")
            self.pos = pos
        else:
            for _ in range(count):
                self.skip_array() if item == GGUFValueType.ARRAY else self.value(item)

    def value(self, kind: GGUFValueType) -> Any:
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind == GGUFValueType.ARRAY:
            item, count = GGUFValueType(self.take("I")), self.take("Q")
            if item in _SCALAR:  # one numpy read for the whole array (token types: 151,936 of them)
                code = _SCALAR[item]
                raw = self.bytes(struct.calcsize(code) * count)
                return np.frombuffer(raw, dtype=np.dtype("<" + code) if code != "?" else np.bool_).tolist()
            if item == GGUFValueType.STRING:  # the tokenizer's tokens and merges: the hot loop
                return self._strings(count)
            return [self.value(item) for _ in range(count)]
        return self.take(_SCALAR[kind])


def read_header(path: str | os.PathLike, *, arrays: bool = True) -> GGUFHeader:
    """The header of a GGUF file of version 2 or 3; ``arrays=False`` leaves the metadata's arrays (the
    tokenizer's) out of ``fields``, three times as fast when only the tensor table is wanted.

    ValueError for a file that is not such a GGUF file, or whose header is cut short or malformed.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if bytes(buf[:4]) != _MAGIC:
            raise ValueError(f"{path} is not a GGUF file (no GGUF magic)")
        c = _Cursor(buf)
        c.pos = 4
        version = c.take("I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} (versions 2 and 3 are read)")
        n_tensors, n_fields = c.take("Q"), c.take("Q")
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key, kind = c.string(), GGUFValueType(c.take("I"))
            if arrays or kind != GGUFValueType.ARRAY:
                fields[key] = c.value(kind)
            else:
                c.skip_array()
        table = []
        for _ in range(n_tensors):
            name = c.string()
            dims = tuple(c.take("Q") for _ in range(c.take("I")))
            table.append((name, dims, GGMLQuantizationType(c.take("I")), c.take("Q")))
        alignment = int(fields.get("general.alignment", _DEFAULT_ALIGNMENT))
        start = c.pos + (-c.pos) % alignment  # the data begins at the next multiple of the alignment
    tensors = []
    for name, dims, kind, offset in table:
        block, size = GGML_QUANT_SIZES[kind]
        tensors.append(TensorInfo(name, kind, dims, start + offset, int(np.prod(dims, dtype=np.int64)) * size // block))
    return GGUFHeader(version, fields, tensors)


def tensor_types(path: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """{tensor name: (GGML type name, number of dimensions)} of a GGUF file (ValueError as read_header).

    Remembered per file (path, size and modification time): an Engine asks it for both models before
    loading them (``saguaro.models.runs_quantized``) and again in the load, a fifth of a second a read.
    """
    p = Path(path).resolve()
    st = p.stat()
    return dict(_tensor_types(p, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _tensor_types(path: Path, size: int, mtime_ns: int) -> dict[str, tuple[str, int]]:
    return {t.name: (t.tensor_type.name, len(t.shape)) for t in read_header(path, arrays=False).tensors}
