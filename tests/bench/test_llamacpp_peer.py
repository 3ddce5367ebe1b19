"""The llama.cpp peer: its command lines, the parsing of its timing lines, its rows in the comparison."""
from __future__ import annotations

import pytest

from saguaro.benchmark import llamacpp_peer as lp
from saguaro.benchmark.methods import llamacpp_methods, select

COMPLETION_LOG = """
llama_perf_sampler_print:    sampling time =       4.10 ms /   138 runs   (    0.03 ms per token, 33658.54 tokens per second)
llama_perf_context_print:        load time =     812.33 ms
llama_perf_context_print: prompt eval time =     402.51 ms /    10 tokens (   40.25 ms per token,    24.84 tokens per second)
llama_perf_context_print:        eval time =    5289.97 ms /   127 runs   (   41.65 ms per token,    24.01 tokens per second)
llama_perf_context_print:       total time =    5712.20 ms /   137 tokens
"""

SPECULATIVE_LOG = """
encoded   10 tokens in    0.412 seconds, speed:   24.272 t/s
decoded  131 tokens in    9.105 seconds, speed:   14.388 t/s

n_draft   = 4
n_predict = 131
n_drafted = 152
n_accept  = 93
accept    = 61.184%
"""


def test_completion_timing_lines_are_parsed():
    f = lp.parse_completion_log(COMPLETION_LOG)
    assert f == {"prompt_s": pytest.approx(0.40251), "prompt_tokens": 10, "decode_s": pytest.approx(5.28997),
                 "decode_tokens": 127}


def test_speculative_timing_and_acceptance_lines_are_parsed():
    f = lp.parse_speculative_log(SPECULATIVE_LOG)
    assert f["prompt_s"] == pytest.approx(0.412) and f["decode_s"] == pytest.approx(9.105)
    assert (f["decode_tokens"], f["drafted"], f["accept"]) == (131, 152, 93)


def test_a_log_without_timing_lines_is_an_error_that_shows_the_log():
    with pytest.raises(RuntimeError, match="(?s)printed no perf lines.*model not found"):
        lp.parse_completion_log("error: model not found")
    with pytest.raises(RuntimeError, match="printed no timing lines"):
        lp.parse_speculative_log("")


def test_command_lines_are_greedy_ignore_eos_and_use_the_rows_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(lp, "binaries", lambda version=lp.VERSION: {n: tmp_path / n for n in lp._TARGETS})
    plain = lp.LlamaCppRunner(tmp_path / "t.gguf", None, tokenizer=None, threads=2)
    cmd = plain.command("p.txt", 128, 0)
    assert cmd[0].endswith("llama-completion") and "--ignore-eos" in cmd and cmd[cmd.index("--temp") + 1] == "0"
    assert cmd[cmd.index("-t") + 1] == "2" and "-md" not in cmd
    spec = lp.LlamaCppRunner(tmp_path / "t.gguf", tmp_path / "d.gguf", tokenizer=None, threads=2, draft_max=8)
    cmd = spec.command("p.txt", 128, 0)
    assert cmd[0].endswith("llama-speculative-simple") and cmd[cmd.index("--spec-draft-n-max") + 1] == "8"
    assert cmd[cmd.index("-md") + 1].endswith("d.gguf") and cmd[cmd.index("-td") + 1] == "2"
    assert "--top-k" not in cmd  # greedy: no sampler settings


def test_sampled_rows_sample_the_plain_tempered_distribution(tmp_path, monkeypatch):
    monkeypatch.setattr(lp, "binaries", lambda version=lp.VERSION: {n: tmp_path / n for n in lp._TARGETS})
    for draft in (None, tmp_path / "d.gguf"):
        cmd = lp.LlamaCppRunner(tmp_path / "t.gguf", draft, tokenizer=None, threads=2).command("p.txt", 64, 3, 0.7)
        flag = {k: cmd[cmd.index(k) + 1] for k in ("--temp", "--seed", "--top-k", "--top-p", "--min-p")}
        assert flag == {"--temp": "0.7", "--seed": "3", "--top-k": "0", "--top-p": "1", "--min-p": "0"}


def test_missing_build_names_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGUARO_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m saguaro.benchmark.llamacpp_peer --build"):
        lp.binaries()


def test_the_peer_build_follows_saguaros_isa_switch(tmp_path, monkeypatch):
    # SAGUARO_CPU_ISA=avx2 holds both engines to AVX2 (an AVX2-only machine, measured on an AVX-512 one)
    monkeypatch.setenv("SAGUARO_CACHE", str(tmp_path))
    monkeypatch.delenv("SAGUARO_CPU_ISA", raising=False)
    assert lp.flavor() == "native-noamx"
    native = lp.build_dir()
    monkeypatch.setenv("SAGUARO_CPU_ISA", "avx2")
    assert lp.flavor() == "avx2"
    assert lp.build_dir() != native and lp.build_dir().name.endswith("-avx2")
    options = lp._FLAVORS["avx2"]
    assert "-DGGML_NATIVE=OFF" in options and "-DGGML_AVX2=ON" in options and "-DGGML_AVX512=OFF" in options
    monkeypatch.setenv("SAGUARO_CPU_ISA", "avx512")
    assert lp.flavor() == "native-noamx"


def test_rows_run_on_the_same_two_cores_and_select_by_name():
    ms = llamacpp_methods(cores=[0, 1])
    assert [m.name for m in ms] == ["llamacpp-ar-2t", "llamacpp-sd-2t-d4", "llamacpp-sd-2t-d8"]
    assert all(m.family == "llama.cpp" and m.cores == (0, 1) and m.threads == 2 for m in ms)
    assert [m.k for m in ms[1:]] == [4, 8] and not ms[0].uses_draft
    assert [m.name for m in select(ms, ["llamacpp-sd-2t-d8"])] == ["llamacpp-sd-2t-d8"]


def test_the_speculative_tools_echo_of_the_prompt_is_cut_from_its_output():
    assert lp.generated_text("\n\ndef f(x):\n    return x\n\n", "def f(x):") == "\n    return x"
    assert lp.generated_text("\n\nabc", "zzz") == "abc"  # a prompt echoed otherwise is kept, not guessed at


def test_the_prompt_reaches_the_peer_as_it_is(tmp_path, monkeypatch):
    """llama.cpp drops one trailing newline of a prompt file and processes escapes by default: the file
    carries one more newline and the command turns escapes off (a HumanEval prompt ends in a newline;
    code holds backslash-n)."""
    monkeypatch.setattr(lp, "binaries", lambda version=lp.VERSION: {n: tmp_path / n for n in lp._TARGETS})
    for prompt in ('def f():\n    """x\\n"""\n', "no newline at the end"):
        text = lp.prompt_file_text(prompt)
        assert text[:-1] == prompt and text.endswith("\n")  # what is left once the peer drops one
    for draft in (None, tmp_path / "d.gguf"):
        cmd = lp.LlamaCppRunner(tmp_path / "t.gguf", draft, tokenizer=None, threads=2).command("p.txt", 8, 0)
        assert "--no-escape" in cmd


def test_the_serving_peer_uses_every_thread_one_slot_per_client_and_the_same_draft(tmp_path):
    from saguaro.benchmark.llamacpp_server import server_command

    plain = server_command(tmp_path / "llama-server", tmp_path / "t.gguf", None, port=8123, threads=2, parallel=16)
    flag = {k: plain[plain.index(k) + 1] for k in ("-m", "--host", "--port", "-t", "-tb", "-np", "-ngl")}
    assert flag == {"-m": str(tmp_path / "t.gguf"), "--host": "127.0.0.1", "--port": "8123", "-t": "2", "-tb": "2",
                    "-np": "16", "-ngl": "0"}
    assert int(plain[plain.index("-c") + 1]) >= 16 * 512 and "-md" not in plain
    spec = server_command(tmp_path / "llama-server", tmp_path / "t.gguf", tmp_path / "d.gguf", port=8123, threads=2,
                          parallel=4, draft_max=8)
    assert spec[spec.index("-md") + 1] == str(tmp_path / "d.gguf") and spec[spec.index("-td") + 1] == "2"
    assert spec[spec.index("--spec-draft-n-max") + 1] == "8"
