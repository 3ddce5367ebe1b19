"""bench/quick_start.py: it times the README's own quick-start command and parses the CLI's speed summary."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import quick_start  # noqa: E402


def test_it_runs_the_readmes_generate_step():
    argv = quick_start.quick_start_argv()
    assert argv[:2] == ["saguaro", "generate"] and len(argv) >= 3


def test_a_failed_run_or_a_missing_summary_is_an_error(monkeypatch):
    class Done:
        def __init__(self, rc, err):
            self.returncode, self.stderr, self.stdout = rc, err, ""

    monkeypatch.setattr(quick_start.subprocess, "run", lambda *a, **k: Done(2, "error: no model"))
    with pytest.raises(RuntimeError, match="failed \\(2\\): error: no model"):
        quick_start.run_once(["saguaro", "generate", "x"], 10)
    monkeypatch.setattr(quick_start.subprocess, "run", lambda *a, **k: Done(0, "some text\n"))
    with pytest.raises(RuntimeError, match="no speed summary"):
        quick_start.run_once(["saguaro", "generate", "x"], 10)
    line = "[auto: sd-2t] 128 tokens, 35.3 tokens/s, 3.46 tokens per round, ... (finish: length)"
    monkeypatch.setattr(quick_start.subprocess, "run", lambda *a, **k: Done(0, f"[auto] why\n{line}\n"))
    got = quick_start.run_once(["saguaro", "generate", "x"], 10)
    assert (got["mode"], got["tokens"], got["tokens_per_s"]) == ("auto: sd-2t", 128, 35.3)
