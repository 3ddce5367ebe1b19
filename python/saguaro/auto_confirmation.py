"""``mode="auto"``'s run-off: the predicted fastest method against the best one of another family, both
run through the runtime on the loaded models, alternating, before the choice is made.

The planner's speed model times each model alone, and a model ran slower inside the engine than alone
(on the Ice Lake of bench/results: the draft's 2-thread step 25-28 ms against 21.7 ms, the target's
2-row verification ~59 against 53 ms), so it predicted SD with K = 1 at 23-24 tokens/s where SD ran at
18.5 and AR at 19.0. The run-off measures what the user will get: each candidate decodes the
calibration prompts greedily on its own runtime (its threads and cores as the choice would run it),
and the candidate with the better median of the paired per-prompt ratios is used.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

#: tokens each candidate decodes per calibration prompt
RUNOFF_TOKENS = 24
#: seconds one run may take before the run-off gives up on the candidate (a stuck run is a defect)
RUNOFF_TIMEOUT_S = 120.0


def family(method: str) -> str:
    """"ar", "sd" or "ssd" of a standard-comparison method name ("saguaro-sd-2t" -> "sd")."""
    return method.removeprefix("saguaro-").split("-")[0]


def candidates(predicted: dict[str, float]) -> list[str]:
    """The predicted fastest method, and its rival: the best AR method when the fastest speculates (AR is
    what the user would run instead), else the best speculative method. The speed model's errors are
    per family (a draft slower in the engine than alone), so a runner-up of the same family would
    confirm nothing."""
    ranked = sorted(predicted, key=lambda m: -predicted[m])
    best = ranked[0]
    rivals = [m for m in ranked[1:] if (family(m) == "ar") != (family(best) == "ar")]
    return [best] + rivals[:1]


def decode_rate(tokens: int, elapsed_s: float, ttft_s: float) -> float:
    """Decode tokens/s of one request: the tokens after the first over the time after it."""
    return (tokens - 1) / max(elapsed_s - ttft_s, 1e-9)


def decide(methods: Sequence[str], rates: dict[str, list[float]]) -> tuple[str, float]:
    """(the method to use, the median paired ratio of the first method's rate to the second's).

    ``methods``: [predicted fastest, rival]; ``rates``: each method's decode rate per prompt, in the same
    prompt order. The rival wins only when it measured faster on the median prompt."""
    if len(methods) < 2:
        return methods[0], 1.0
    first, rival = methods[0], methods[1]
    ratios = [a / b for a, b in zip(rates[first], rates[rival]) if b > 0]
    ratio = statistics.median(ratios) if ratios else 1.0
    return (first if ratio >= 1.0 else rival), ratio


def run_off(methods: Sequence[str], make_runtime: Callable[[str], Any], prompts: Sequence[Sequence[int]], *,
            tokens: int = RUNOFF_TOKENS) -> dict[str, list[float]]:
    """Each method's decode rate on each prompt: one runtime per method (``make_runtime(method)``), a
    warm-up request each, then the prompts with the methods alternating (the order reversed on every
    other prompt, so neither always runs first)."""
    from saguaro.runtime import RequestParams

    runtimes = {}
    rates: dict[str, list[float]] = {m: [] for m in methods}
    params = RequestParams(max_new_tokens=tokens)
    try:
        for m in methods:
            runtimes[m] = make_runtime(m)
            rt = runtimes[m]
            rt.result(rt.submit(list(prompts[0]), RequestParams(max_new_tokens=4)), timeout=RUNOFF_TIMEOUT_S)
        for i, prompt in enumerate(prompts):
            for m in (methods if i % 2 == 0 else list(reversed(methods))):
                rt = runtimes[m]
                t0 = time.perf_counter()
                done = rt.result(rt.submit(list(prompt), params), timeout=RUNOFF_TIMEOUT_S)
                elapsed = time.perf_counter() - t0
                if done.finish_reason == "error":
                    raise RuntimeError(f"mode='auto': the run-off of {m} failed: {done.error}")
                ttft = float(done.metrics.get("time_to_first_token_s", 0.0))
                rates[m].append(decode_rate(len(done.new_tokens), elapsed, ttft))
    finally:
        for rt in runtimes.values():
            rt.close()
    return rates


__all__ = ["RUNOFF_TOKENS", "candidates", "decide", "decode_rate", "family", "run_off"]
