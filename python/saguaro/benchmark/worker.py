"""One worker process: loads its models once, then runs requests for the methods it serves.

saguaro rows each get their own Engine over the shared loaded models; the engine's target and draft
threads pin themselves to the row's cores and set their torch thread counts. The transformers rows
pin the whole process to the row's cores and threads before each request. Messages over a multiprocessing pipe:
``("run", method_name, batch_ids, max_new_tokens, temperature, seed)`` (batch_ids: the token ids of the
requests submitted together) → ``("ok", result)`` or
``("error", traceback text)``; ``("stop",)`` ends the worker.
"""
from __future__ import annotations

import time
import traceback
import warnings
from typing import Any, Optional

from saguaro.benchmark.methods import MethodSpec
from saguaro.benchmark.pinning import current_rss_mib, peak_rss_mib, pin_process


def _torch_dtype(name: str) -> Any:
    import torch

    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32,
             "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


def _engine_metrics(engine: Any) -> dict:
    try:
        m = engine.metrics()
    except Exception:  # noqa: BLE001 - aggregates are optional for the benchmark
        return {}
    if not isinstance(m, dict):
        m = getattr(m, "__dict__", {}) or {}
    return m


def _numeric(d: Any, prefix: str = "") -> dict[str, float]:
    """Flatten numeric leaves of nested dicts ("totals.rounds": 12.0); lists are skipped."""
    out: dict[str, float] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_numeric(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if hasattr(v, "tolist"):
        return v.tolist()
    return repr(v)


#: per-request counters that add up over the requests of a batch
_SUMMED = ("rounds", "generated_tokens", "prompt_tokens", "backups_fast", "backups_jit", "speculations_from_cache")
_SUMMED_LISTS = ("hits_per_position", "lookups_per_position", "accepted_histogram", "accepted_per_position",
                 "proposed_per_position")


def batch_metrics(per_request: list[dict]) -> dict:
    """One metrics dict for a batch: counters summed, per-position lists summed element-wise, rates
    recomputed from the sums; other figures are the first request's. Batch 1 is returned unchanged."""
    if len(per_request) == 1:
        return per_request[0]
    out = dict(per_request[0])
    for key in _SUMMED:
        vals = [r.get(key) for r in per_request]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[key] = sum(vals)
    for key in _SUMMED_LISTS:
        lists = [r.get(key) for r in per_request]
        if all(isinstance(v, list) for v in lists) and lists:
            width = max(len(v) for v in lists)
            out[key] = [sum(v[i] for v in lists if i < len(v)) for i in range(width)]
    if out.get("rounds"):
        out["tokens_per_round"] = out.get("generated_tokens", 0) / out["rounds"]
        out.pop("accepted_per_round", None)
    hits, lookups = out.get("hits_per_position"), out.get("lookups_per_position")
    if isinstance(hits, list) and isinstance(lookups, list) and sum(lookups):
        out["cache_hit_rate"] = sum(hits) / sum(lookups)
    acc, prop = out.get("accepted_per_position"), out.get("proposed_per_position")
    if isinstance(acc, list) and isinstance(prop, list) and sum(prop):
        out["acceptance_rate"] = sum(acc) / sum(prop)
    out["batch_size"] = len(per_request)
    return out


class _SaguaroMethods:
    """saguaro engines for several methods over one pair of loaded models."""

    def __init__(self, methods: list[MethodSpec], target: str, draft: str, dtype: str, seed: int,
                 draft_kw: Optional[dict] = None, target_kw: Optional[dict] = None) -> None:
        import saguaro
        from saguaro import models

        self.saguaro = saguaro
        self.dtype = _torch_dtype(dtype)
        self.seed = seed
        union = sorted({c for m in methods for c in m.cores})
        pin_process(union, max(m.threads for m in methods))
        t0 = time.perf_counter()
        self.target = models.load(target, dtype=self.dtype, device="cpu", **(target_kw or {}))
        self.draft = None
        if any(m.uses_draft for m in methods):
            self.draft = models.load(draft, dtype=self.dtype, device="cpu", **(draft_kw or {}))
        self.load_s = time.perf_counter() - t0
        self.methods = {m.name: m for m in methods}
        self.engines: dict[str, Any] = {}

    def _engine(self, m: MethodSpec) -> Any:
        if m.name not in self.engines and m.mode == "auto":
            # the engine chooses mode, K, fan-out, threads and cores itself: give it nothing else
            self.engines[m.name] = self.saguaro.Engine(target=self.target, draft=self.draft, mode="auto",
                                                       dtype=self.dtype, seed=self.seed)
        if m.name not in self.engines:
            kwargs: dict = dict(mode=m.mode, dtype=self.dtype, seed=self.seed, target_threads=m.target_threads,
                                target_cores=list(m.target_cores))
            if m.uses_draft:
                kwargs.update(draft=self.draft, draft_threads=m.draft_threads, draft_cores=list(m.draft_cores))
                for key in ("k", "fanout", "saguaro_c", "backup"):
                    v = getattr(m, key)
                    if v is not None:
                        kwargs[key] = list(v) if isinstance(v, tuple) else v
            self.engines[m.name] = self.saguaro.Engine(target=self.target, **kwargs)
        return self.engines[m.name]

    def run(self, name: str, batch_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> dict:
        m = self.methods[name]
        # no process-wide re-pinning here: each engine's target/draft threads pinned themselves to the
        # row's cores when they started (re-pinning every thread would undo SSD's one-core-each split)
        engine = self._engine(m)
        sp = self.saguaro.SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                         ignore_eos=True)
        before = _numeric(_engine_metrics(engine))
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always")
            outs = engine.generate([list(ids) for ids in batch_ids], sp)
        t1 = time.perf_counter()
        after = _numeric(_engine_metrics(engine))
        # one batch at a time per engine: the change of the engine's aggregates is this batch's
        delta = {k: after[k] - before.get(k, 0.0) for k in after}
        if delta.get("draft_failures", 0.0) > 0:  # the engine fell back to AR: it was not this method
            raise RuntimeError(f"{name}: the draft worker failed and the engine continued autoregressively, so "
                               f"this run would not measure {name}: " + "; ".join(str(n.message) for n in notes))
        for n in notes:
            warnings.warn_explicit(n.message, n.category, n.filename, n.lineno)
        metrics = batch_metrics([_jsonable(dict(o.metrics or {})) for o in outs])
        metrics["engine_delta"] = delta
        if getattr(engine, "auto_choice", None) is not None:  # what mode="auto" chose and why
            metrics["auto"] = engine.auto_choice.as_dict()
        ttfts = [o.metrics.get("time_to_first_token_s", o.metrics.get("ttft_s")) for o in outs if o.metrics]
        ttfts = [t for t in ttfts if isinstance(t, (int, float))]
        per_request = [list(o.token_ids) for o in outs]
        return {"token_ids": [t for r in per_request for t in r], "batch_token_ids": per_request,
                "elapsed_s": t1 - t0, "ttft_s": max(ttfts) if ttfts else None, "first_tokens": len(outs),
                "metrics": metrics}

    def close(self) -> None:
        for e in self.engines.values():
            try:
                e.close()
            except Exception:  # noqa: BLE001 - closing at exit must not mask the results
                pass


class _TransformersMethods:
    """transformers peers over one pair of loaded transformers models."""

    def __init__(self, methods: list[MethodSpec], target: str, draft: str, dtype: str, seed: int) -> None:
        from saguaro.benchmark.peers import TransformersRunner, load_transformers_model

        union = sorted({c for m in methods for c in m.cores})
        pin_process(union, max(m.threads for m in methods))
        t0 = time.perf_counter()
        tdtype = _torch_dtype(dtype)
        self.target = load_transformers_model(target, tdtype)
        self.draft = load_transformers_model(draft, tdtype) if any(m.uses_draft for m in methods) else None
        self.load_s = time.perf_counter() - t0
        self.methods = {m.name: m for m in methods}
        self.runners = {m.name: TransformersRunner(self.target, self.draft if m.uses_draft else None) for m in methods}

    def run(self, name: str, batch_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> dict:
        m = self.methods[name]
        pin_process(m.cores, m.threads)
        return self.runners[name].generate(batch_ids, max_new_tokens, temperature, seed)

    def close(self) -> None:
        pass


class _LlamaCppMethods:
    """llama.cpp peers: one subprocess per request, on the row's cores (saguaro.benchmark.llamacpp_peer)."""

    def __init__(self, methods: list[MethodSpec], target: str, draft: str) -> None:
        from saguaro.benchmark.llamacpp_peer import LlamaCppRunner, gguf_path
        from saguaro.benchmark.peers import load_tokenizer

        t0 = time.perf_counter()
        tokenizer = load_tokenizer(target)
        target_gguf = gguf_path(target)
        draft_gguf = gguf_path(draft) if any(m.uses_draft for m in methods) else None
        self.methods = {m.name: m for m in methods}
        self.runners = {m.name: LlamaCppRunner(target_gguf, draft_gguf if m.uses_draft else None, tokenizer,
                                               threads=m.threads, draft_max=m.k or 4) for m in methods}
        self.load_s = time.perf_counter() - t0

    def run(self, name: str, batch_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> dict:
        m = self.methods[name]
        pin_process(m.cores, m.threads)  # the peer's process inherits the row's cores
        return self.runners[name].generate(batch_ids, max_new_tokens, temperature, seed)

    def close(self) -> None:
        pass


def worker_main(conn: Any, methods: list[MethodSpec], target: str, draft: str, dtype: str, seed: int,
                draft_kw: Optional[dict] = None, target_kw: Optional[dict] = None) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    families = {m.family for m in methods}
    server: Optional[Any] = None
    try:
        if families == {"saguaro"}:
            server = _SaguaroMethods(methods, target, draft, dtype, seed, draft_kw, target_kw)
        elif families == {"transformers"}:
            server = _TransformersMethods(methods, target, draft, dtype, seed)
        elif families == {"llama.cpp"}:
            server = _LlamaCppMethods(methods, target, draft)
        else:
            raise ValueError(f"one worker serves one family of methods, got {sorted(families)}")
        conn.send(("ready", {"load_s": server.load_s, "rss_mib": current_rss_mib()}))
    except BaseException:  # noqa: BLE001 - report every failure to the harness
        conn.send(("error", traceback.format_exc()))
        conn.close()
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        if msg[0] == "stop":
            break
        try:
            _, name, batch_ids, max_new_tokens, temperature, seed = msg
            result = server.run(name, batch_ids, max_new_tokens, temperature, seed)
            result["peak_rss_mib"] = peak_rss_mib()
            result["rss_mib"] = current_rss_mib()
            conn.send(("ok", result))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
    server.close()
    conn.close()
