"""The memory-bandwidth roofline of quantized runs: the GGUF bytes a decode streams, the bandwidth probe
and the per-method ceilings."""
from __future__ import annotations

import numpy as np
import pytest

from saguaro import _core
from saguaro.benchmark import bandwidth_roofline as br


def _gguf(path, tied: bool):
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("token_embd.weight", np.zeros((100, 32), dtype=np.float32))  # 12800 bytes
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((64, 32), dtype=np.float32))  # 8192
    w.add_tensor("output_norm.weight", np.zeros(32, dtype=np.float32))  # 128
    if not tied:
        w.add_tensor("output.weight", np.zeros((100, 32), dtype=np.float16))  # 6400
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_decode_streams_every_tensor_but_a_separate_heads_embedding(tmp_path):
    assert br.weight_bytes_per_token(_gguf(tmp_path / "tied.gguf", True)) == 12800 + 8192 + 128
    assert br.weight_bytes_per_token(_gguf(tmp_path / "untied.gguf", False)) == 8192 + 128 + 6400
    # a pruned draft vocabulary: a quarter of the head's rows
    assert br.weight_bytes_per_token(tmp_path / "untied.gguf", vocab_keep=25) == 8192 + 128 + 1600
    assert br.weight_bytes_per_token(tmp_path / "tied.gguf", vocab_keep=50) == 6400 + 8192 + 128


def _method(name, mode, family="saguaro", threads=2, k=None):
    return {"name": name, "mode": mode, "family": family, "target_threads": threads, "k": k,
            "target_cores": [0, 1]}


def test_each_mode_is_held_to_its_own_bytes_per_token():
    methods = [_method("ar", "ar"), _method("sd", "sd", k=2), _method("ssd", "ssd", threads=1, k=2),
               _method("peer-ar", "ar", family="llama.cpp"), _method("peer-sd", "sd", family="llama.cpp")]
    summary = {"ar": {"decode_tps": 10.0}, "sd": {"decode_tps": 12.0, "tokens_per_round": 2.0},
               "ssd": {"decode_tps": 9.0, "tokens_per_round": 2.5}, "peer-ar": {"decode_tps": 8.0},
               "peer-sd": {"decode_tps": 5.0}}
    rows = {r["method"]: r for r in br.roofline(methods, summary, 1000, 400, {1: 10_000.0, 2: 20_000.0})}
    assert rows["ar"]["bytes_per_token"] == 1000 and rows["ar"]["roofline_tps"] == pytest.approx(20.0)
    assert rows["ar"]["of_roofline"] == pytest.approx(0.5)
    assert rows["sd"]["bytes_per_token"] == pytest.approx((1000 + 2 * 400) / 2.0)
    assert rows["ssd"]["bytes_per_token"] == pytest.approx(400.0)  # 1000 / 2.5, on one thread's bandwidth
    assert rows["ssd"]["roofline_tps"] == pytest.approx(25.0)
    assert rows["peer-ar"]["of_roofline"] == pytest.approx(0.4)
    assert rows["peer-sd"]["roofline_tps"] is None  # the peer reports no rounds
    text = "\n".join(br.markdown_lines({"target_bytes": 1000, "draft_bytes": 400, "cores": [0, 1],
                                        "buffer_bytes": 2 << 30, "bandwidth": {1: 1e10, 2: 2e10},
                                        "rows": list(rows.values())}))
    assert "2 threads 20.0 GB/s" in text and "| ar | 0 | 20.00 | 10.00 | 50% |" in text
    # read back from a results JSON, the thread counts are strings
    again = br.markdown_lines({"target_bytes": 1000, "draft_bytes": 400, "cores": [0, 1], "buffer_bytes": 2 << 30,
                               "bandwidth": {"1": 1e10, "2": 2e10}, "rows": []})
    assert "1 thread 10.0 GB/s, 2 threads 20.0 GB/s" in "\n".join(again)


def test_the_bandwidth_probe_reads_and_refuses_bad_arguments():
    assert _core.memory_read_bandwidth(8 << 20, 2, 2) > 1e8  # any machine reads 8 MiB at > 100 MB/s
    for bad in ((1 << 10, 1, 1), (8 << 20, 0, 1), (8 << 20, 1, 0)):
        with pytest.raises(ValueError, match="memory_read_bandwidth"):
            _core.memory_read_bandwidth(*bad)
