"""The speed model fed the paper's setting (saguaro.benchmark.paper_setting)."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from saguaro.benchmark import paper_setting as ps
from saguaro.benchmark.speed_model import expected_tokens


def test_prediction_is_the_speed_model_on_the_stated_inputs() -> None:
    r = ps.predict()
    v = 1 / 88.8
    d = v / 5
    e = expected_tokens(0.80, 4)
    # worked by hand from docs/algorithm.md §5: SD = E / (v + K d); SSD = E / (h max(v, 5d) + (1-h)(K d + v))
    assert r["predicted"]["ar"] == pytest.approx(88.8)
    assert r["predicted"]["sd"] == pytest.approx(e / (v + 4 * d))
    assert r["predicted"]["ssd"] == pytest.approx(e / (0.9 * v + 0.1 * (4 * d + v)))
    for key in ("ar", "sd", "ssd", "ssd/sd"):
        assert r["error"][key] == pytest.approx(r["predicted"][key] / r["paper"][key] - 1)
    assert r["paper"] == {"ar": 88.8, "sd": 136.8, "ssd": 203.8, "ssd/sd": pytest.approx(203.8 / 136.8)}


def test_prediction_does_not_read_the_sd_or_ssd_row(monkeypatch) -> None:
    before = ps.predict()["predicted"]
    monkeypatch.setitem(ps.PAPER_ROW, "sd", 1.0)
    monkeypatch.setitem(ps.PAPER_ROW, "ssd", 1.0)
    after = ps.predict()["predicted"]
    assert after == before  # the figures it is judged against are not inputs


def test_implied_acceptance_reproduces_the_sd_row() -> None:
    a = ps.implied_acceptance()
    r = ps.predict(replace(ps.PaperSetting(), acceptance=a))
    assert r["predicted"]["sd"] == pytest.approx(136.8, rel=1e-6)
    assert 0 < a < 1 and not math.isclose(a, ps.PaperSetting().acceptance)


def test_sensitivity_moves_the_right_way() -> None:
    rows = ps.sensitivity()
    by = {(r["acceptance"], r["draft_steps_per_verify"]): r for r in rows}
    assert by[(0.9, 5.0)]["sd"] > by[(0.6, 5.0)]["sd"]            # more acceptance, faster
    assert by[(0.8, 10.0)]["sd"] > by[(0.8, 2.5)]["sd"]           # a cheaper draft, faster SD
    assert all(r["ssd"] > r["sd"] for r in rows if r["draft_steps_per_verify"] >= 5.0)


def test_markdown_states_the_inputs() -> None:
    text = ps.markdown(ps.predict())
    assert "(input)" in text and "a = 0.80" in text and "| SSD |" in text
