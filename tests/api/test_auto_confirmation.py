"""mode="auto"'s run-off (saguaro.auto_confirmation): who runs off, who wins, and how the runs alternate,
on stand-in runtimes with a stand-in clock (no models, no wall-clock thresholds)."""
from __future__ import annotations

import pytest

from saguaro import auto_confirmation as ac

_PRED = {"saguaro-ar-1t": 10.0, "saguaro-ar-2t": 19.0, "saguaro-sd-1t": 12.0, "saguaro-sd-2t": 23.3,
         "saguaro-ssd": 21.0}


def test_the_fastest_prediction_runs_off_against_the_best_of_the_other_family():
    assert ac.candidates(_PRED) == ["saguaro-sd-2t", "saguaro-ar-2t"]
    ar_first = dict(_PRED, **{"saguaro-ar-2t": 30.0})
    assert ac.candidates(ar_first) == ["saguaro-ar-2t", "saguaro-sd-2t"]
    assert ac.candidates({"saguaro-ar-2t": 5.0}) == ["saguaro-ar-2t"]


def test_the_rival_wins_only_when_it_measured_faster_on_the_median_prompt():
    methods = ["saguaro-sd-2t", "saguaro-ar-2t"]
    # SD faster on 1 prompt of 3 (the planner's over-prediction): AR is chosen
    chosen, ratio = ac.decide(methods, {"saguaro-sd-2t": [20.0, 18.0, 18.4], "saguaro-ar-2t": [19.0, 19.0, 19.0]})
    assert chosen == "saguaro-ar-2t" and ratio == pytest.approx(18.4 / 19.0)
    chosen, ratio = ac.decide(methods, {"saguaro-sd-2t": [20.0, 19.5, 18.0], "saguaro-ar-2t": [19.0, 19.0, 19.0]})
    assert chosen == "saguaro-sd-2t" and ratio > 1
    assert ac.decide(["saguaro-ar-2t"], {"saguaro-ar-2t": [1.0]}) == ("saguaro-ar-2t", 1.0)


def test_the_decode_rate_leaves_out_the_first_token_and_its_wait():
    assert ac.decode_rate(25, elapsed_s=2.5, ttft_s=0.5) == pytest.approx(12.0)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _Done:
    def __init__(self, tokens: int, ttft: float) -> None:
        self.new_tokens = list(range(tokens))
        self.metrics = {"time_to_first_token_s": ttft}
        self.finish_reason, self.error = "length", None


class _Runtime:
    """Decodes at a fixed rate on the stand-in clock; records who ran when."""

    def __init__(self, name: str, rate: float, clock: _Clock, log: list) -> None:
        self.name, self.rate, self.clock, self.log, self.closed = name, rate, clock, log, False
        self.pending: list[int] = []

    def submit(self, prompt, params) -> int:
        self.pending.append(params.max_new_tokens)
        return len(self.pending)

    def result(self, rid, timeout=None):
        n = self.pending[rid - 1]
        self.clock.now += 0.5 + (n - 1) / self.rate
        self.log.append((self.name, n))
        return _Done(n, 0.5)

    def close(self) -> None:
        self.closed = True


def test_the_run_off_warms_each_runtime_alternates_and_closes_them(monkeypatch):
    clock, log, made = _Clock(), [], {}
    monkeypatch.setattr(ac.time, "perf_counter", clock.perf_counter)
    rates_of = {"saguaro-sd-2t": 18.0, "saguaro-ar-2t": 20.0}

    def make(m):
        made[m] = _Runtime(m, rates_of[m], clock, log)
        return made[m]

    rates = ac.run_off(["saguaro-sd-2t", "saguaro-ar-2t"], make, [[1], [2], [3], [4]], tokens=9)
    assert rates["saguaro-sd-2t"] == pytest.approx([18.0] * 4)
    assert rates["saguaro-ar-2t"] == pytest.approx([20.0] * 4)
    assert [name for name, n in log if n == 9] == ["saguaro-sd-2t", "saguaro-ar-2t", "saguaro-ar-2t", "saguaro-sd-2t",
                                                    "saguaro-sd-2t", "saguaro-ar-2t", "saguaro-ar-2t", "saguaro-sd-2t"]
    assert [name for name, n in log if n != 9] == ["saguaro-sd-2t", "saguaro-ar-2t"]  # the warm-ups
    assert all(rt.closed for rt in made.values())
    assert ac.decide(["saguaro-sd-2t", "saguaro-ar-2t"], rates)[0] == "saguaro-ar-2t"


def test_a_failed_run_names_the_method_and_closes_the_runtimes(monkeypatch):
    clock, log, made = _Clock(), [], {}
    monkeypatch.setattr(ac.time, "perf_counter", clock.perf_counter)

    class _Failing(_Runtime):
        def result(self, rid, timeout=None):
            d = super().result(rid, timeout)
            if self.pending[rid - 1] > 4:
                d.finish_reason, d.error = "error", "the draft died"
            return d

    def make(m):
        made[m] = _Failing(m, 10.0, clock, log)
        return made[m]

    with pytest.raises(RuntimeError, match="run-off of saguaro-ssd failed: the draft died"):
        ac.run_off(["saguaro-ssd", "saguaro-ar-2t"], make, [[1]], tokens=9)
    assert all(rt.closed for rt in made.values())
