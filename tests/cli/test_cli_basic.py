"""The saguaro command through a subprocess: errors, info, bench (no model is loaded here)."""
import json
import os
import subprocess
import sys

import pytest

import saguaro


def run_cli(*args, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "saguaro", *args], capture_output=True, text=True,
                          input=input, timeout=timeout)


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and saguaro.__version__ in r.stdout
    r = run_cli("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("generate", "info", "models", "bench"))


def test_info_prints_build_devices_and_cache():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    for key in ("version: " + saguaro.__version__, "cuda_compiled:", "cuda_device_count:", "nccl_available:",
                "torch:", "model_cache:"):
        assert key in r.stdout
    r = run_cli("info", "--json")
    info = json.loads(r.stdout)
    assert info["version"] == saguaro.__version__ and info["cuda_device_count"] >= 0
    from saguaro.kernels import quant
    assert info["quant_kernel_path"] == quant.path_name()  # e.g. "avx512+amx", "avx2"


@pytest.mark.parametrize("args, msg", [
    (("generate",), "error: no prompt: give it as an argument, '-' for stdin, or --file PATH"),
    (("generate", "x", "--temperature", "-1"), "error: temperature must be >= 0"),
    (("generate", "x", "--top-p", "0"), r"error: top_p must be in (0, 1]"),
    (("generate", "x", "--top-k", "-2"), "error: top_k must be an integer >= 0"),
    (("generate", "x", "--max-new-tokens", "0"), "error: max_new_tokens must be an integer >= 1"),
    (("generate", "--file", "/nonexistent/prompt.txt"), "error: cannot read the prompt file"),
    (("generate", "x", "--file", "y"), "error: give the prompt either as an argument or with --file"),
    (("generate", "x", "--k", "0", "--target", "smollm2-135m", "--draft", "smollm2-135m"),
     "error: k (draft tokens per round) must be an integer in 1..64, got 0"),
    (("generate", "x", "--saguaro-c", "2", "--target", "smollm2-135m", "--draft", "smollm2-135m"),
     "error: saguaro_c must be in [0, 1]"),
])
def test_generate_bad_input_is_one_error_line_exit_2(args, msg, capsys):
    from saguaro.cli import main
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(msg), err


def test_error_through_subprocess_has_no_traceback():
    r = run_cli("generate", "x", "--temperature", "-1")
    assert r.returncode == 2 and r.stderr.strip() == "error: temperature must be >= 0 (0 = greedy), got -1.0"


def test_argparse_errors_exit_2(capsys):
    from saguaro.cli import main
    for args, msg in ((["generate", "x", "--mode", "fast"], "invalid choice: 'fast'"),
                      (["generate", "x", "--fanout", "a,b"], "--fanout takes a budget")):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_bench_delegates_or_says_why(monkeypatch):
    import importlib.util
    r = run_cli("bench", "--help")
    if importlib.util.find_spec("saguaro.bench_cli") is None:
        assert r.returncode == 2 and r.stderr.startswith("error: the benchmark driver is not part of this installation")
    else:
        assert r.returncode == 0, r.stderr


def test_main_in_process_catches_value_error(capsys):
    from saguaro.cli import main
    assert main(["generate", "x", "--top-p", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: top_p must be in (0, 1]") and err.count("\n") == 1


def test_unexpected_exception_is_one_line(monkeypatch, capsys):
    from saguaro import cli
    def boom(args):
        raise KeyError("planted")
    monkeypatch.setattr(cli, "cmd_info", boom)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == "error: internal error KeyError: 'planted' (set SAGUARO_DEBUG=1 for the traceback)\n"
    monkeypatch.setenv("SAGUARO_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["info"])


def test_generate_options_reach_engine_and_sampling(monkeypatch, capsys):
    import saguaro.engine
    from saguaro.cli import main
    seen = {}

    class Recorder:
        def __init__(self, **kw):
            seen["engine"] = kw
            raise ValueError("recorded")
    monkeypatch.setattr(saguaro.engine, "Engine", Recorder)
    assert main(["generate", "x", "--target", "t", "--draft", "d", "--mode", "sd", "--k", "3", "--fanout", "2,1,1,1",
                 "--saguaro-c", "0.5", "--backup", "jit", "--dtype", "float32", "--threads", "2,1"]) == 2
    kw = seen["engine"]
    assert (kw["target"], kw["draft"], kw["mode"], kw["k"], kw["fanout"], kw["saguaro_c"], kw["backup"]) == (
        "t", "d", "sd", 3, [2, 1, 1, 1], 0.5, "jit")
    assert (kw["target_threads"], kw["draft_threads"], str(kw["dtype"])) == (2, 1, "torch.float32")
    assert capsys.readouterr().err == "error: recorded\n"
    assert kw["quantized"] is None  # the engine decides (saguaro.models.runs_quantized)
    main(["generate", "x", "--threads", "2", "--fanout", "6"])
    assert (seen["engine"]["target_threads"], seen["engine"]["draft_threads"], seen["engine"]["fanout"]) == (2, 2, 6)
    for flag, want in (("--quantized", True), ("--no-quantized", False)):
        main(["generate", "x", flag])
        assert seen["engine"]["quantized"] is want


def test_stop_strings_from_the_shell_are_unescaped():
    from saguaro.cli import _parser
    a = _parser().parse_args(["generate", "x", "--stop", r"\n\n", "--stop", r"a\\nb", "--stop", r"\q"])
    assert a.stop == ["\n\n", "a\\nb", r"\q"]
