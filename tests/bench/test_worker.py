"""The benchmark worker refuses to time a method whose engine fell back to autoregressive decoding."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest

import saguaro
from saguaro.benchmark.methods import MethodSpec
from saguaro.benchmark.worker import _SaguaroMethods


class _FakeEngine:
    """generate() returns one output; a failing one warns and counts a draft failure as the runtime does."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.failures = 0

    def metrics(self) -> dict:
        return {"draft_failures": self.failures, "rounds": 3}

    def generate(self, prompts, sp):
        if self.fail:
            self.failures += 1
            warnings.warn("saguaro request 0: draft worker failed: boom; continuing autoregressively", RuntimeWarning)
        return [SimpleNamespace(token_ids=[5, 6], metrics={"time_to_first_token_s": 0.1})]


def _methods(engine: _FakeEngine) -> _SaguaroMethods:
    m = _SaguaroMethods.__new__(_SaguaroMethods)
    m.saguaro = saguaro
    spec = MethodSpec(name="saguaro-ssd", family="saguaro", mode="ssd")
    m.methods = {spec.name: spec}
    m.engines = {spec.name: engine}
    return m


def test_a_draft_failure_aborts_the_method_with_the_engines_message():
    with pytest.raises(RuntimeError, match="saguaro-ssd: the draft worker failed.*boom"):
        _methods(_FakeEngine(fail=True)).run("saguaro-ssd", [[1, 2]], 2, 0.0, 0)


def test_a_healthy_engine_is_timed():
    out = _methods(_FakeEngine(fail=False)).run("saguaro-ssd", [[1, 2]], 2, 0.0, 0)
    assert out["token_ids"] == [5, 6] and out["metrics"]["engine_delta"]["draft_failures"] == 0
