"""``saguaro generate`` end to end on the small real model (SmolLM2-135M as target and draft)."""
import subprocess
import sys

SMALL = ["--target", "smollm2-135m", "--draft", "smollm2-135m", "--dtype", "float32"]


def run_cli(*args, input=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "saguaro", *args], capture_output=True, text=True,
                          input=input, timeout=timeout)


def test_generate_streams_text_and_prints_speed_summary():
    r = run_cli("generate", "def fibonacci(n):", *SMALL, "--mode", "ssd", "--k", "2", "--max-new-tokens", "8")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "no text"
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith("[ssd] 8 tokens, ") and "tokens/s" in summary and "tokens per round" in summary and "accepted drafts per round" in summary
    assert "cache hit rate" in summary and "(finish: length)" in summary

    # the same greedy text from stdin, in mode sd, and with --file
    r2 = run_cli("generate", "-", *SMALL, "--mode", "sd", "--k", "2", "--max-new-tokens", "8", "--no-summary",
                 input="def fibonacci(n):")
    assert r2.returncode == 0 and r2.stdout == r.stdout and r2.stderr.strip() == ""


def test_generate_file_chat_and_stop(tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_text("Reply with the single word: yes")
    r = run_cli("generate", "--file", str(f), "--chat", "--target", "smollm2-135m", "--mode", "ar",
                "--dtype", "float32", "--max-new-tokens", "16", "--temperature", "0.7", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "<|im_end|>" not in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("[ar] ")


def test_generate_defaults_to_auto_and_says_what_it_chose():
    r = run_cli("generate", "def add(a, b):", *SMALL, "--max-new-tokens", "6")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-2].startswith("[auto] ") and "predicted fastest" in lines[-2]
    assert lines[-1].startswith("[auto: ") and "(finish: length)" in lines[-1]
