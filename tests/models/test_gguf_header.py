"""saguaro's one-pass GGUF header reader against gguf-py's GGUFReader: every metadata value type,
the tensor table, the tensors' bytes through GGUFFile, and the refusals of a cut or foreign file."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from saguaro.models.gguf_file import GGUFFile
from saguaro.models.gguf_header import read_header, tensor_types


def _reader_view(path):
    r = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tensors = [(t.name, t.tensor_type, tuple(int(d) for d in t.shape), int(t.data_offset), int(t.n_bytes))
               for t in r.tensors]
    return r, fields, tensors


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory):
    """A GGUF file with a value of every metadata type, arrays of numbers, strings and booleans, a
    non-default alignment, and tensors in float and block types."""
    path = tmp_path_factory.mktemp("header") / "every.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_custom_alignment(64)
    for add, key, value in ((w.add_uint8, "u8", 250), (w.add_int8, "i8", -7), (w.add_uint16, "u16", 65000),
                            (w.add_int16, "i16", -300), (w.add_uint32, "u32", 4_000_000_000),
                            (w.add_int32, "i32", -2_000_000_000), (w.add_float32, "f32", 0.25),
                            (w.add_uint64, "u64", 2**63 + 5), (w.add_int64, "i64", -(2**40)),
                            (w.add_float64, "f64", 1e-300), (w.add_bool, "yes", True), (w.add_bool, "no", False),
                            (w.add_string, "s", "héllo ✓")):
        add(f"test.{key}", value)
    w.add_array("test.ints", [1, -2, 3])
    w.add_array("test.floats", [0.5, 1.5])
    w.add_array("test.bools", [True, False, True])
    w.add_token_list([f"tok{i} ✓" for i in range(3000)] + ["", " "])
    w.add_token_types([1, 3, 6] * 1000 + [1, 1])
    rng = np.random.default_rng(0)
    w.add_tensor("a", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("b", rng.standard_normal(7).astype(np.float16))
    q = rng.standard_normal((4, 64)).astype(np.float32)
    for kind in ("Q8_0", "Q5_0", "Q4_1"):
        qt = gguf.GGMLQuantizationType[kind]
        w.add_tensor(f"q_{kind}", gguf.quants.quantize(q, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_header_equals_gguf_readers(every_kind):
    reader, fields, tensors = _reader_view(every_kind)
    h = read_header(every_kind)
    assert h.fields == fields and h.version == 3
    assert [(t.name, t.tensor_type, t.shape, t.data_offset, t.n_bytes) for t in h.tensors] == tensors
    assert h.fields["test.s"] == "héllo ✓" and h.fields["test.u64"] == 2**63 + 5 and h.fields["test.bools"] == [
        True, False, True]
    assert all(t.data_offset % 64 == 0 for t in h.tensors)
    assert tensor_types(every_kind)["q_Q4_1"] == ("Q4_1", 2)
    bare = read_header(every_kind, arrays=False)  # the arrays stepped over, the rest as read in full
    assert bare.tensors == h.tensors and bare.fields == {k: v for k, v in fields.items() if not isinstance(v, list)}
    g = GGUFFile(every_kind)
    for mine, theirs in zip(g.tensor_infos, reader.tensors):
        got = g.data(mine)
        assert got.dtype == theirs.data.dtype and got.shape == theirs.data.shape
        assert np.array_equal(got, theirs.data)


def test_cut_or_foreign_files_are_refused(every_kind, tmp_path):
    raw = every_kind.read_bytes()
    for n in (3, 30, 200, 3000):
        cut = tmp_path / f"cut{n}.gguf"
        cut.write_bytes(raw[:n])
        with pytest.raises(ValueError):
            read_header(cut)
        with pytest.raises(ValueError):
            read_header(cut, arrays=False)
        with pytest.raises(ValueError, match="truncated or corrupt"):
            GGUFFile(cut)
    tail = tmp_path / "tail.gguf"  # the whole header, the last tensor's data cut
    last = read_header(every_kind).tensors[-1]
    tail.write_bytes(raw[:last.data_offset + last.n_bytes - 1])
    with pytest.raises(ValueError, match="is truncated: tensor q_Q4_1 ends at byte"):
        GGUFFile(tail)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"PK\x03\x04" + raw[4:])
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_header(other)
    v1 = tmp_path / "v1.gguf"
    v1.write_bytes(raw[:4] + (1).to_bytes(4, "little") + raw[8:])
    with pytest.raises(ValueError, match="GGUF version 1"):
        read_header(v1)


def test_tensor_types_reads_a_file_once_until_it_changes(every_kind, tmp_path, monkeypatch):
    import os

    from saguaro.models import gguf_header

    reads = []
    real = gguf_header.read_header
    monkeypatch.setattr(gguf_header, "read_header", lambda p, **kw: reads.append(p) or real(p, **kw))
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(every_kind.read_bytes())
    first = tensor_types(copy)
    first["mine"] = ("F32", 1)  # the caller's copy: the remembered table is not changed
    assert tensor_types(str(copy)) == tensor_types(copy) != first and len(reads) == 1
    # the same path written anew (another size and time) is read again
    w = gguf.GGUFWriter(str(copy), "llama")
    w.add_tensor("only", np.zeros((2, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.utime(copy, ns=(1, 1))
    assert tensor_types(copy) == {"only": ("F32", 2)} and len(reads) == 2


@pytest.mark.slow
def test_real_files_read_as_gguf_py_reads_them():
    """The three presets' files (the default pair's tokenizers: 151,936 tokens, 151,387 merges)."""
    from saguaro.models.presets import PRESETS, preset_gguf

    for name in PRESETS:
        try:
            path = preset_gguf(PRESETS[name])
        except ImportError as e:
            pytest.skip(str(e))
        _, fields, tensors = _reader_view(path)
        h = read_header(path)
        assert h.fields == fields, name
        assert [(t.name, t.tensor_type, t.shape, t.data_offset, t.n_bytes) for t in h.tensors] == tensors, name
