"""Run every method in the same run, alternating per prompt, each in a pinned worker process."""
from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from saguaro.benchmark.methods import MethodSpec
from saguaro.benchmark.prompt_suites import Prompt, repo_root
from saguaro.benchmark.stats import ratios, summarize

#: how long a worker may take to load its models (the 1.5B from GGUF takes about a minute)
LOAD_TIMEOUT_S = 1800.0


@dataclass
class BenchConfig:
    """Everything that defines a run (stored verbatim in the results)."""

    target: str
    draft: str
    dtype: str = "bf16"
    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0
    batch: int = 1
    warmup_tokens: int = 4
    suite: str = "custom"
    command: str = ""
    notes: str = ""
    reference: str = "saguaro-ar-1t"
    #: saguaro rows' draft scores only this many lowest ids + specials + prompt tokens (None: all)
    draft_vocab: Optional[int] = None
    #: saguaro rows' draft projections in int8: "weight" (weight-only) or "dynamic" (None: the dtype)
    draft_int8: Optional[str] = None
    #: saguaro rows keep the GGUF files' quantized weights (models.load(quantized=True))
    quantized: bool = False

    def target_load_kwargs(self) -> dict:
        """What saguaro rows pass to models.load for the target."""
        return {"quantized": True} if self.quantized else {}

    def draft_load_kwargs(self) -> dict:
        """What saguaro rows pass to models.load for the draft (its cheaper-draft options)."""
        kw: dict = {}
        if self.draft_vocab is not None:
            kw["draft_vocab"] = self.draft_vocab
        if self.draft_int8:
            kw["int8"] = self.draft_int8
        elif self.quantized:
            kw["quantized"] = True
        return kw

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.draft_int8 not in (None, "weight", "dynamic"):
            raise ValueError(f"draft_int8 must be 'weight' or 'dynamic', got {self.draft_int8!r}")


class WorkerError(RuntimeError):
    """A worker process failed (its traceback is the message)."""


class Worker:
    """A spawned process serving the methods of one worker group."""

    def __init__(self, name: str, methods: list[MethodSpec], cfg: BenchConfig) -> None:
        from saguaro.benchmark.worker import worker_main

        ctx = mp.get_context("spawn")
        self.name = name
        self.methods = methods
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker_main, name=f"bench-{name}", daemon=True,
                                   args=(child, methods, cfg.target, cfg.draft, cfg.dtype, cfg.seed,
                                         cfg.draft_load_kwargs(), cfg.target_load_kwargs()))
        self.process.start()
        child.close()
        self.info: dict = {}

    def wait_ready(self, timeout: float = LOAD_TIMEOUT_S) -> dict:
        """Block until the models are loaded; raises WorkerError with the worker's traceback."""
        if not self.conn.poll(timeout):
            raise WorkerError(f"worker {self.name} did not load its models within {timeout:.0f} s")
        kind, payload = self._recv()
        if kind != "ready":
            raise WorkerError(f"worker {self.name} failed to start:\n{payload}")
        self.info = payload
        return payload

    def _recv(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()
        except EOFError as exc:
            raise WorkerError(f"worker {self.name} died (exit code {self.process.exitcode})") from exc

    def run(self, method: str, batch_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> dict:
        """One batch of requests, submitted together, on one method; the result dict of the worker."""
        self.conn.send(("run", method, batch_ids, max_new_tokens, temperature, seed))
        kind, payload = self._recv()
        if kind != "ok":
            raise WorkerError(f"method {method} failed:\n{payload}")
        return payload

    def stop(self) -> None:
        """Ask the worker to exit; terminate it if it does not within 30 s."""
        try:
            self.conn.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def encode_prompts(prompts: Sequence[Prompt], target: str, dtype: str) -> list[list[int]]:
    """Token ids of every prompt with the target's tokenizer (chat prompts through its chat template).

    Encoded once, here, so every method gets exactly the same ids.
    """
    tokenizer = _tokenizer(target)
    from saguaro.prompts import encode_prompt

    out = []
    for i, p in enumerate(prompts):
        if p.chat:
            messages = ([{"role": "system", "content": p.system}] if p.system else []) + [{"role": "user", "content": p.text}]
            ids = encode_prompt(messages, tokenizer, 1 << 31, chat=True, index=i).token_ids
        else:
            ids = encode_prompt(p.text, tokenizer, 1 << 31, chat=False, index=i).token_ids
        out.append([int(t) for t in ids])
    return out


def _tokenizer(target: str) -> Any:
    from saguaro.benchmark.peers import load_tokenizer

    return load_tokenizer(target)


def machine_info() -> dict:
    """CPU model, cores, memory, versions and the git commit, for the results file."""
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "affinity": sorted(os.sched_getaffinity(0)),
                            "torch_threads_default": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/cpuinfo") as fh:  # the SIMD features the kernels dispatch on
            for line in fh:
                if line.startswith("flags"):
                    info["cpu_flags"] = sorted(f for f in line.split(":", 1)[1].split()
                                               if f.startswith(("avx", "fma", "f16c", "amx", "vnni")))
                    break
        with open("/proc/meminfo") as fh:
            info["mem_total_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    try:
        from saguaro.kernels import quant

        info["quant_kernel_path"] = quant.path_name() if quant.available() else None  # env switches applied
    except ImportError:
        info["quant_kernel_path"] = None
    from saguaro.benchmark.llamacpp_peer import flavor

    info["llamacpp_build"] = flavor()  # which peer build rows of llama.cpp use (its ISA ceiling)
    info["aten_cpu_capability"] = os.environ.get("ATEN_CPU_CAPABILITY") or "default"
    for pkg in ("transformers", "saguaro", "numpy"):
        try:
            mod = __import__(pkg)
            info[f"{pkg}_version"] = getattr(mod, "__version__", "?")
        except ImportError:
            info[f"{pkg}_version"] = None
    try:
        root = repo_root()
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def group_workers(methods: Sequence[MethodSpec], isolate: bool = False) -> dict[str, list[MethodSpec]]:
    """Methods by worker process (``isolate``: one process per method)."""
    groups: dict[str, list[MethodSpec]] = {}
    for m in methods:
        key = m.name if isolate or not m.worker else m.worker
        groups.setdefault(key, []).append(m)
    return groups


def run_benchmark(cfg: BenchConfig, prompts: Sequence[Prompt], methods: Sequence[MethodSpec], *,
                  isolate: bool = False, progress: bool = True, planner: Optional[dict] = None,
                  prompt_ids: Optional[list[list[int]]] = None) -> dict:
    """Measure every method on every batch of prompts, round-robin per batch; return the results record.

    The method order rotates from batch to batch so that no method always runs first (or right
    after the heaviest one). Workers stay loaded for the whole run; one batch runs at a time (its
    ``cfg.batch`` requests are submitted together). A sample is one (method, batch): its token_ids
    are the batch's requests' tokens concatenated, batch_token_ids keeps them apart.
    """
    if not prompts:
        raise ValueError("no prompts to run")
    if not methods:
        raise ValueError("no methods to run")
    started = datetime.datetime.now(datetime.timezone.utc)
    if prompt_ids is None:
        prompt_ids = encode_prompts(prompts, cfg.target, cfg.dtype)
    groups = group_workers(methods, isolate)
    workers: dict[str, Worker] = {}
    samples: list[dict] = []
    method_worker = {m.name: g for g, ms in groups.items() for m in ms}
    try:
        for g, ms in groups.items():  # one at a time: loading in parallel only doubles the peak memory
            workers[g] = Worker(g, ms, cfg)
            workers[g].wait_ready()
        names = [m.name for m in methods]
        batches = make_batches(prompts, prompt_ids, cfg.batch)
        if cfg.warmup_tokens > 0:
            for name in names:
                workers[method_worker[name]].run(name, batches[0][1], cfg.warmup_tokens, cfg.temperature, cfg.seed)
        total = len(batches) * len(names)
        bar = _progress(total, progress)
        for i, (batch_prompts, batch_ids) in enumerate(batches):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                r = workers[method_worker[name]].run(name, batch_ids, cfg.max_new_tokens, cfg.temperature, cfg.seed + i)
                r.update({"method": name, "prompt_id": "+".join(p.id for p in batch_prompts), "prompt_index": i,
                          "prompt_tokens": sum(len(ids) for ids in batch_ids), "batch_size": len(batch_ids),
                          "order_in_round": order.index(name), "loadavg": os.getloadavg()[0]})
                samples.append(r)
                if bar is not None:
                    bar.set_postfix_str(f"{name} {len(r['token_ids']) / r['elapsed_s']:.1f} tok/s")
                    bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        for w in workers.values():
            w.stop()
    names = [m.name for m in methods]
    # agreement is a greedy figure: sampled rows of different methods draw different tokens
    reference = reference_method(cfg.reference, names) if cfg.temperature == 0 else None
    summary = summarize(samples, names, reference)
    finished = datetime.datetime.now(datetime.timezone.utc)
    return {
        "schema": "saguaro-bench/1",
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "wall_s": (finished - started).total_seconds(),
        "config": {**asdict(cfg), "reference": reference},
        "methods": [m.to_dict() for m in methods],
        "workers": {g: {"methods": [m.name for m in ms], **workers[g].info} for g, ms in groups.items()},
        "prompts": [dict(p.to_dict(), tokens=len(ids)) for p, ids in zip(prompts, prompt_ids)],
        "machine": machine_info(),
        "samples": samples,
        "summary": summary,
        "ratios": ratios(summary, samples),
        "planner": planner,
    }


def reference_method(wanted: Optional[str], names: Sequence[str]) -> Optional[str]:
    """The row the agreement column compares with: `wanted` where it ran, else the first saguaro AR row
    (so a run of 2-thread rows, the llama.cpp comparison, still reports the peer's greedy agreement)."""
    if wanted in names:
        return wanted
    return next((n for n in names if n.startswith("saguaro-ar")), None)


def make_batches(prompts: Sequence[Prompt], prompt_ids: Sequence[list[int]],
                 batch: int) -> list[tuple[list[Prompt], list[list[int]]]]:
    """Consecutive groups of ``batch`` prompts (the last may be smaller), submitted together."""
    return [(list(prompts[i:i + batch]), [list(ids) for ids in prompt_ids[i:i + batch]])
            for i in range(0, len(prompts), batch)]


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="bench", unit="req")
