from saguaro.results import derive_metrics, speed_summary


def test_derived_figures_from_raw_counters():
    m = derive_metrics({"generated_tokens": 12, "rounds": 4, "accepted_histogram": [1, 0, 1, 2],
                        "proposed_per_position": [4, 3, 3], "accepted_per_position": [3, 3, 2],
                        "lookups_per_position": [1, 0, 1, 2], "hits_per_position": [0, 0, 1, 2]})
    assert m["tokens_per_round"] == 3.0
    assert m["accepted_per_round"] == (0 + 2 + 6) / 4
    assert m["acceptance_rate"] == 8 / 10
    assert m["cache_hit_rate"] == 3 / 4


def test_no_division_by_zero_and_runtime_values_kept():
    m = derive_metrics({"generated_tokens": 0, "rounds": 0, "accepted_histogram": [0, 0],
                        "lookups_per_position": [0, 0], "hits_per_position": [0, 0], "cache_hit_rate": 0.25})
    assert "tokens_per_round" not in m and "accepted_per_round" not in m and m["cache_hit_rate"] == 0.25


def test_speed_summary_line():
    line = speed_summary({"generated_tokens": 8, "tokens_per_s": 12.345, "tokens_per_round": 2.5,
                          "accepted_per_round": 1.5, "cache_hit_rate": 0.8})
    assert line == "8 tokens, 12.3 tokens/s, 2.50 tokens per round, 1.50 accepted drafts per round, cache hit rate 80%"
    assert speed_summary({"generated_tokens": 3}) == "3 tokens, cache hit rate n/a"
