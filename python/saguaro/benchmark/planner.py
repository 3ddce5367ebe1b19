"""The planner: measure latencies and acceptance, choose K, fan-out, C and the backup threshold, and
say how fast each method can be at most (the LIMIT) so that a missed target is attributed to the
physics (latencies, acceptance) or to the implementation.

Latencies come from the model adapters themselves, each model in its own pinned process: target
verification of K+1 tokens, draft single-token steps, trunk forwards and tree steps of M branches,
alone and with the other model running on the other core (memory-bandwidth contention). Acceptance
and the hit-rate-vs-fan-out curve come from a short calibration: the target generates a few tokens,
the draft scores the same text. Greedy: the rank of each target token among the draft's candidates
gives both (exactly what greedy SD/SSD would see). Temperature > 0: the target samples the text and
both models' distributions at each position give acceptance and hit rates for each Saguaro constant C
(sampling_calibration), from which C is chosen.
"""
from __future__ import annotations

import multiprocessing as mp
import statistics
import traceback
from dataclasses import asdict
from typing import Any, Optional, Sequence

from saguaro.benchmark import sampling_calibration as sc
from saguaro.benchmark.adapter_probe import AdapterProbe
from saguaro.benchmark import speed_model as sm

#: issue #6 targets: (id, text, kind, threshold)
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("ssd_vs_ar2", "SSD >= 1.5x best AR 2-thread", "min", 1.5),
    ("ssd_vs_sd1", "SSD >= 1.2x SD with one core for both", "min", 1.2),
    ("ssd_vs_sd2", "SSD >= 1.0x best SD on the same two cores", "min", 1.0),
    ("ar_vs_hf", "saguaro AR >= transformers AR", "min", 1.0),
    ("sd_vs_assisted", "saguaro SD >= 1.1x assisted", "min", 1.1),
    ("round_vs_verify", "SSD mean round time <= 1.15x mean verify time", "max", 1.15),
)


# ------------------------------------------------------------------ measurement processes
def _model_proc(conn: Any, spec: str, dtype: str, busy: Any, load_kw: Optional[dict] = None) -> None:
    """A process holding one model's adapter; answers timing requests (see _ModelProcess)."""
    try:
        import torch

        from saguaro import models
        from saguaro.benchmark.pinning import pin_process
        from saguaro.benchmark.worker import _torch_dtype

        loaded = models.load(spec, dtype=_torch_dtype(dtype), device="cpu", **(load_kw or {}))
        probe = AdapterProbe(loaded.adapter)
        conn.send(("ready", {"vocab": loaded.adapter.vocab_size}))
    except BaseException:  # noqa: BLE001
        conn.send(("error", traceback.format_exc()))
        return
    with torch.inference_mode():
        while True:
            msg = conn.recv()
            try:
                op = msg[0]
                if op == "stop":
                    break
                if op == "pin":
                    pin_process(msg[1], msg[2])
                    conn.send(("ok", None))
                elif op == "context":
                    conn.send(("ok", probe.set_context(msg[1])))
                elif op == "time":
                    _, what, arg, reps = msg
                    conn.send(("ok", probe.time(what, arg, reps)))
                elif op == "loop":
                    _, what, arg = msg
                    conn.send(("ok", probe.loop(what, arg, busy)))
                elif op == "continue":
                    _, prompt, n, temperature, seed = msg
                    conn.send(("ok", probe.continue_text(prompt, n, temperature, seed)))
                elif op == "score":
                    _, prompt, cont, temperature = msg
                    conn.send(("ok", probe.score_text(prompt, cont, temperature)))
                else:
                    conn.send(("error", f"unknown op {op!r}"))
            except BaseException:  # noqa: BLE001
                conn.send(("error", traceback.format_exc()))


class _ModelProcess:
    def __init__(self, spec: str, dtype: str, busy: Any, load_kw: Optional[dict] = None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_model_proc, args=(child, spec, dtype, busy, load_kw), daemon=True)
        self.proc.start()
        child.close()
        self.call_wait()

    def send(self, *msg: Any) -> None:
        self.conn.send(msg)

    def call_wait(self) -> Any:
        try:
            kind, payload = self.conn.recv()
        except EOFError as exc:
            raise RuntimeError(f"planner model process died (exit code {self.proc.exitcode})") from exc
        if kind == "error":
            raise RuntimeError(f"planner model process failed:\n{payload}")
        return payload

    def call(self, *msg: Any) -> Any:
        self.send(*msg)
        return self.call_wait()

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.terminate()


def _med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def measure(target: str, draft: str, dtype: str, context_ids: Sequence[int], calibration_prompts: Sequence[Sequence[int]],
            *, cores: Sequence[int], k_max: int = 8, budgets: Sequence[int] = (1, 2, 4, 6, 8, 12, 16),
            reps: int = 3, calibration_tokens: int = 32, draft_kw: Optional[dict] = None,
            target_kw: Optional[dict] = None,
            temperature: float = 0.0, seed: int = 0) -> tuple[sm.Latencies, list[int], Optional[sc.Distributions]]:
    """Measure the latencies (alone, contended, 2 threads) and calibrate (draft_kw: the draft's
    models.load options, such as a pruned vocabulary or int8, as the saguaro rows run it).

    Returns (latencies, ranks, distributions): at temperature 0 the target's greedy text and the rank
    of each of its tokens under the draft, distributions None; at temperature > 0 the target samples
    the text (seeded) and the distributions hold both models' probabilities at each of its positions
    (the ranks are then of the sampled tokens)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    a_core, b_core = cores[0], cores[1]
    busy = mp.get_context("spawn").Event()
    tp = _ModelProcess(target, dtype, busy, target_kw)
    dp = _ModelProcess(draft, dtype, busy, draft_kw)
    try:
        tp.call("pin", [a_core], 1)
        dp.call("pin", [b_core], 1)
        tp.call("context", list(context_ids))
        dp.call("context", list(context_ids))
        ns = list(range(1, k_max + 2))
        tv = {n: _med(tp.call("time", "extend", n, reps)) for n in ns}
        d_step = _med(dp.call("time", "extend", 1, reps * 2))
        d_ext = {n: _med(dp.call("time", "extend", n, reps)) for n in ns}
        d_tree = {m: _med(dp.call("time", "tree", m, reps)) for m in budgets}
        # contended: the draft keeps building trees while the target verifies, and the reverse
        busy.set()
        dp.send("loop", "tree", 6)
        tv_c = {n: _med(tp.call("time", "extend", n, reps)) for n in ns}
        busy.clear()
        dp.call_wait()
        busy.set()
        tp.send("loop", "extend", 5)
        d_ext_c = {n: _med(dp.call("time", "extend", n, reps)) for n in ns}
        d_tree_c = {m: _med(dp.call("time", "tree", m, reps)) for m in budgets}
        busy.clear()
        tp.call_wait()
        # two threads on both cores, each model alone
        tp.call("pin", [a_core, b_core], 2)
        tv2 = {n: _med(tp.call("time", "extend", n, reps)) for n in ns}
        tp.call("pin", [a_core], 1)
        dp.call("pin", [a_core, b_core], 2)
        d_step2 = _med(dp.call("time", "extend", 1, reps * 2))
        dp.call("pin", [b_core], 1)
        ranks: list[int] = []
        p_rows, q_rows = [], []
        for i, prompt in enumerate(calibration_prompts):
            cont, p = tp.call("continue", list(prompt), calibration_tokens, temperature, seed + i)
            r, q = dp.call("score", list(prompt), cont, temperature)
            ranks += r
            if p is not None:
                p_rows.append(p)
                q_rows.append(q)
    finally:
        busy.clear()
        tp.stop()
        dp.stop()
    lat = sm.Latencies(target_verify=tv, target_verify_2t=tv2, target_verify_contended=tv_c, draft_step=d_step,
                       draft_step_2t=d_step2, draft_extend=d_ext, draft_extend_contended=d_ext_c,
                       draft_tree=d_tree, draft_tree_contended=d_tree_c,
                       extra={"context_tokens": len(context_ids), "reps": reps})
    dists = None
    if p_rows:
        import torch

        dists = sc.Distributions.from_rows(torch.cat(p_rows), torch.cat(q_rows))
    return lat, ranks, dists


# ------------------------------------------------------------------ the plan
def ssd_limit_entry(lat: sm.Latencies, a: float, ks: Sequence[int]) -> dict:
    """The plan's "ssd_limit": sm.ssd_limit at the best K in ks, with what it means."""
    k = max(ks, key=lambda k: sm.ssd_limit(lat, a, k))
    return {"k": k, "tokens_per_s": sm.ssd_limit(lat, a, k),
            "meaning": "every round a cache hit: E(a,K) / max(contended verify(K+1), the draft's least "
                       "round: trunk forward + K of its cheapest tree steps)"}


def make_plan(lat: sm.Latencies, ranks: Sequence[int], *, temperature: float = 0.0,
              k_range: Sequence[int] = range(1, 9), budgets: Optional[Sequence[int]] = None,
              dists: Optional[sc.Distributions] = None) -> dict:
    """Choose K, fan-out, C and the backup threshold; predict every method's speed and SSD's limit.

    At temperature > 0 with ``dists`` (planner.measure's distributions), acceptance and hit curves come
    from the distributions and C is chosen over sampling_calibration.C_GRID; without them (or greedy)
    they come from the ranks and C = 1.
    """
    measured_k = [k for k in k_range if k + 1 in lat.target_verify]
    ks = measured_k or list(k_range)
    bud = [m for m in (budgets or sorted(lat.draft_tree)) if m >= 1]
    c_table: Optional[list[dict]] = None
    if temperature > 0 and dists is not None:
        # a: plain speculative sampling's acceptance (C = 1), which sync SD has whatever C SSD uses;
        # the hit curves reported are the chosen C's
        a = float(sc.acceptance(dists, 1.0, 0).mean())
        c, best, cal, c_table = sc.plan_c(dists, lat, ks, bud)
        rejected, accepted = cal.rejected, cal.all_accepted
        c_note = (f"chosen over C in {list(sc.C_GRID)} by the planned speed, acceptance and hit rates from both "
                  f"models' distributions at T = {temperature:g} (sampling_calibration)")
    else:
        a, rejected, accepted = sm.curves_from_ranks(ranks)
        best = sm.plan_ssd(lat, a, rejected.r, rejected, accepted, ks, bud)
        c = 1.0
        c_note = ("temperature 0: the Saguaro constant C has no effect (docs/algorithm.md §4), C = 1"
                  if temperature == 0 else
                  "C = 1: no distributions were calibrated at this temperature (planner.measure(temperature=...))")
    r = rejected.r
    replay_tpr, replay_hist = sm.replay_sd(ranks, best.k)
    replay_h, replay_per = sm.replay_ssd_hits(ranks, best.k, best.fanout)
    sd1_k, sd1 = sm.best_sd(lat, a, 1, ks)
    sd2_k, sd2 = sm.best_sd(lat, a, 2, ks)
    hit_round = max(best.verify_s, best.tree_work_s)
    crit = sm.critical_batch(best.hit_rate, best.tokens_per_round, 1.0, hit_round, best.backup_s)
    return {
        "acceptance": a,
        "acceptance_source": "distributions" if c_table is not None else "ranks",
        "calibration_positions": len(dists) if c_table is not None and dists is not None else len(ranks),
        # kept so that a stored plan can be refitted or replayed (bench.rescore) without the models
        "calibration_ranks": [int(x) for x in ranks],
        "hit_curve_rejected": asdict(rejected),
        "hit_curve_all_accepted": asdict(accepted),
        "fanout_r": r,
        "k": best.k,
        "fanout_budget": best.budget,
        "fanout": best.fanout,
        "saguaro_c": c,
        "saguaro_c_note": c_note,
        "saguaro_c_table": c_table,
        "backup": "jit",
        "backup_critical_batch": crit,
        "sd_k_1t": sd1_k,
        "sd_k_2t": sd2_k,
        "predicted": {
            "saguaro-ar-1t": sm.ar_speed(lat, 1),
            "saguaro-ar-2t": sm.ar_speed(lat, 2),
            "saguaro-sd-1t": sd1,
            "saguaro-sd-2t": sd2,
            "saguaro-ssd": best.tokens_per_s,
        },
        "ssd": asdict(best) | {"round_over_verify": best.round_over_verify},
        "ssd_limit": ssd_limit_entry(lat, a, ks),
        "replay": {"k": best.k, "tokens_per_round": replay_tpr, "accepted_histogram": replay_hist,
                   "hit_rate": replay_h, "hits_lookups_per_position": replay_per,
                   "meaning": "greedy SD/SSD replayed on the calibration text (no geometric assumption; "
                              "at temperature > 0 a greedy replay of the sampled text, for reference only)"},
        "latencies": asdict(lat),
    }


def _measured(summary: dict, name: str) -> Optional[float]:
    s = summary.get(name)
    return s.get("decode_tps") if s else None


def _run_figures(plan: dict, summary: dict, methods: Sequence[dict]) -> tuple[int, list[int], float, float, str]:
    """(K, fan-out, acceptance, hit rate, source) of the SSD run: its own plan and, where the run recorded
    them, the acceptance its tokens per round imply and its measured hit rate (else the planner's)."""
    ssd_method = next((m for m in methods if m.get("name") == "saguaro-ssd"), {})
    k = int(ssd_method.get("k") or plan["k"])
    fanout = list(ssd_method.get("fanout") or plan["fanout"])
    if len(fanout) != k + 1:  # a fan-out given for another K: fall back to the plan's
        k, fanout = plan["k"], list(plan["fanout"])
    s = summary.get("saguaro-ssd") or {}
    tpr, h = s.get("tokens_per_round"), s.get("hit_rate")
    if tpr is None or h is None:
        return k, fanout, plan["acceptance"], plan["ssd"]["hit_rate"], "the planner's acceptance and hit rate"
    a = sm.acceptance_from_tokens(min(max(tpr, 1.0), k + 1.0), k)
    return k, fanout, a, min(max(h, 0.0), 1.0), (f"the run's acceptance (a = {a:.3f} from {tpr:.2f} tokens/round) "
                                                 f"and hit rate ({h:.0%})")


def evaluate_targets(plan: dict, summary: dict, methods: Sequence[dict] = ()) -> list[dict]:
    """Each issue-#6 target: measured ratio, the model's predicted ratio, LIMIT, bound and the verdict.

    Two ceilings come from the speed model and the planner's measured latencies (so a drift of the
    machine's speed between the planner's measurements and the run cancels out; every comparison row
    is modelled from the same latencies and acceptance):
    - LIMIT: the SSD run's own plan (the K and fan-out of the "saguaro-ssd" entry in ``methods``, the
      results' method list; the plan's without one) at the acceptance and hit rate the
      run measured, with no overhead beyond the model's round (sm.ssd_predict_at_hit_rate). Falling
      short of it is the implementation's doing.
    - bound: every round a hit, at the best measured K (sm.ssd_limit). Between LIMIT and the same
      figure at the run's own K lies what a draft that predicts more verification outcomes would add
      ("hit rate"); between that and the bound, what another K would add ("plan"); beyond the bound,
      physics.
    The peer targets divide saguaro's modelled speed by the peer's measured one (no model of the
    peers), so their LIMIT and bound are the same number.
    """
    lat = sm.Latencies.from_json(plan["latencies"])
    pred = plan["predicted"]
    k, fanout, a, h, source = _run_figures(plan, summary, methods)
    ks = sorted({k} | {n - 1 for n in lat.target_verify if n >= 2})
    at_hits = sm.ssd_predict_at_hit_rate(lat, a, k, fanout, h)
    all_hit = sm.ssd_predict_at_hit_rate(lat, a, k, fanout, 1.0)
    limit = at_hits.tokens_per_s
    bound = max(sm.ssd_limit(lat, a, kk) for kk in ks)
    ar2 = sm.ar_speed(lat, 2)
    sd1 = sm.best_sd(lat, a, 1, ks)[1]
    sd2 = max(sm.best_sd(lat, a, 2, ks)[1], sd1)
    ssd = _measured(summary, "saguaro-ssd")

    def ratio(x: Optional[float], y: Optional[float]) -> Optional[float]:
        return x / y if x is not None and y else None

    best_sd_measured = max([v for v in (_measured(summary, "saguaro-sd-1t"), _measured(summary, "saguaro-sd-2t"))
                            if v is not None], default=None)
    hf_ar = _measured(summary, "transformers-ar-2t")
    assisted = _measured(summary, "transformers-assisted-2t")
    ssd_sum = summary.get("saguaro-ssd") or {}
    rv = (ssd_sum.get("round_time_ms") / ssd_sum["verify_time_ms"]
          if ssd_sum.get("round_time_ms") and ssd_sum.get("verify_time_ms") else None)
    best_sd2 = max(pred["saguaro-sd-2t"], pred["saguaro-sd-1t"])
    hf_limit = ratio(pred["saguaro-ar-2t"], hf_ar)
    assisted_limit = ratio(pred["saguaro-sd-2t"], assisted)
    own_k = sm.ssd_limit(lat, a, k)  # every round a hit at the run's own K
    rows = {  # measured, predicted, LIMIT, bound, bound at the run's own K
        "ssd_vs_ar2": (ratio(ssd, _measured(summary, "saguaro-ar-2t")), pred["saguaro-ssd"] / pred["saguaro-ar-2t"],
                       limit / ar2, bound / ar2, own_k / ar2),
        "ssd_vs_sd1": (ratio(ssd, _measured(summary, "saguaro-sd-1t")), pred["saguaro-ssd"] / pred["saguaro-sd-1t"],
                       limit / sd1, bound / sd1, own_k / sd1),
        "ssd_vs_sd2": (ratio(ssd, best_sd_measured), pred["saguaro-ssd"] / best_sd2, limit / sd2, bound / sd2,
                       own_k / sd2),
        "ar_vs_hf": (ratio(_measured(summary, "saguaro-ar-2t"), hf_ar), hf_limit, hf_limit, hf_limit, hf_limit),
        "sd_vs_assisted": (ratio(_measured(summary, "saguaro-sd-2t"), assisted), assisted_limit, assisted_limit,
                           assisted_limit, assisted_limit),
        # the round's floor: at the run's hit rate (misses add the backup), and with every round a hit
        "round_vs_verify": (rv, plan["ssd"]["round_over_verify"], at_hits.round_over_verify,
                            all_hit.round_over_verify, all_hit.round_over_verify),
    }

    def reaches(x: Optional[float], kind: str, thr: float) -> bool:
        return x is not None and ((x >= thr) if kind == "min" else (x <= thr))

    out = []
    for tid, text, kind, thr in TARGETS:
        measured, predicted, lim, bnd, bnd_own_k = rows[tid]
        if measured is None:
            verdict = "not measured"
        elif reaches(measured, kind, thr):
            verdict = "met"
        elif lim is None or reaches(lim, kind, thr):
            verdict = "missed: implementation (the model allows it at the run's own acceptance and hit rate)"
        elif reaches(bnd_own_k, kind, thr):
            verdict = f"missed: hit rate (only more cache hits than the run's {h:.0%} would reach it)"
        elif reaches(bnd, kind, thr):
            verdict = (f"missed: plan (not even every round a hit reaches it at the run's K = {k}; "
                       "it does at another K)")
        else:
            verdict = "missed: physics (beyond the bound: not even with every round a hit)"
        # how much of the LIMIT the run delivered (1.0: no overhead beyond the model)
        of_limit = None if measured is None or not lim else (measured / lim if kind == "min" else lim / measured)
        out.append({"id": tid, "target": text, "kind": kind, "threshold": thr, "measured": measured,
                    "predicted": predicted, "limit": lim, "bound": bnd, "bound_at_run_k": bnd_own_k,
                    "of_limit": of_limit, "verdict": verdict,
                    "limit_source": source})
    return out

