"""The public engine: a target and a draft speculating on the runtime, requests in and outputs out.

Loading and checking the model pair is ``saguaro.models.load_pair``; prompts, per-request state,
stop strings and finishing are ``saguaro.request_book``; this file ties them to the runtime and
holds the blocking API (generate, stream, metrics).
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Optional, Sequence, Union

import torch

from saguaro.models.pair import load_pair
from saguaro.planned_defaults import planned_shape, planned_threads
from saguaro.request_book import RequestBook, TrackedRequest
from saguaro.results import RequestOutput, derive_metrics
from saguaro.sampling_params import SamplingParams
from saguaro.speculation_config import SpeculationConfig, resolve_speculation
from saguaro.stream import Stream

#: generate() shows a progress bar from this many prompts on (when stderr is a terminal)
_PROGRESS_FROM = 8
#: how long an interrupted generate() waits for the runtime to confirm its cancellations (seconds)
_ABANDON_WAIT_S = 5.0


class _EosPerRequest:
    """The target adapter as the runtime sees it: without EOS ids of its own.

    The runtime stops every request at its target's EOS ids; the engine instead sends them with
    each request (in stop_token_ids), so that a request with ignore_eos runs to max_new_tokens.
    """

    eos_token_ids: list[int] = []

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


def _make_runtime(target_adapter: Any, draft_adapter: Any, config: SpeculationConfig) -> Any:
    """draft_adapter: an adapter (a draft thread in this process) or a RemoteDraft."""
    from saguaro.runtime import Runtime

    return Runtime(target_adapter, draft_adapter, config)


def _fixed_fields(speculation: Optional[SpeculationConfig], given: dict[str, Any]) -> list[str]:
    """The SpeculationConfig fields the caller set (mode="auto" keeps them): keywords given, and the
    fields of a given ``speculation`` that differ from the defaults."""
    names = {name for name, value in given.items() if value is not None}
    if "fanout" in names:  # a budget or a list: the whole fan-out is the caller's
        names |= {"fanout_budget", "fanout_kind"}
    if isinstance(speculation, SpeculationConfig):  # anything else is refused by resolve_speculation
        default = SpeculationConfig()
        names |= {f for f in vars(default) if f != "mode" and getattr(speculation, f) != getattr(default, f)}
    return sorted(names)


def _close_runtime(runtime: Any, remote: Any = None, process: Any = None) -> None:
    """Close the runtime and drop its update callback (which refers back to the engine's book); then
    the link to a remote draft (its last frames free the draft's sequences) and a draft process."""
    runtime.close()
    try:
        runtime.set_update_callback(None)
    except Exception:
        pass
    if remote is not None:
        remote.close()
    if process is not None:
        process.stop()


class _Nothing:
    def close(self) -> None:
        pass

    def set_update_callback(self, callback: Any) -> None:
        pass


def _draft_on_blocks(target: Any, draft: Any, quantized: Optional[bool], *, dtype: torch.dtype, device: str,
                     draft_int8: Union[bool, str]) -> bool:
    """Whether the draft this engine loads will run on GGUF blocks (for its planned K and fan-out): as
    ``load_pair`` decides it, before loading; False for a draft loaded already, remote or none."""
    from saguaro.distributed.address import is_draft_address
    from saguaro.models.loading import default_pair, runs_quantized

    if draft is None and target is None:
        draft = default_pair()[1]
    if draft is None or draft_int8 or is_draft_address(draft) or not isinstance(draft, (str, os.PathLike)):
        return False
    if quantized is not None:
        return bool(quantized)
    return runs_quantized(draft, dtype=dtype, device=device)


def _connect_draft(draft: Any, start_process: bool, pair: Any, dtype: torch.dtype, quantized: Optional[bool],
                   config: SpeculationConfig, timeout: float) -> tuple[Any, Any]:
    """A RemoteDraft for the draft at ``draft`` (an address), or for a draft process started for
    ``draft`` (a preset name or path; None: the default pair's draft), and that process."""
    from saguaro.distributed.draft_process import DraftProcess
    from saguaro.distributed.remote_draft import RemoteDraft
    from saguaro.models.loading import default_pair
    from saguaro.models.vocab import vocab_table

    process = None
    address = draft
    if start_process:
        spec = draft if draft is not None else default_pair()[1]
        process = DraftProcess(spec, threads=config.draft_threads or None, cores=config.draft_cores or None,
                               dtype=str(dtype).removeprefix("torch."), quantized=quantized)
        address = process.address
    try:
        table = vocab_table(pair.tokenizer) if pair.tokenizer is not None else None
        remote = RemoteDraft(address, vocab_size=int(pair.target.adapter.vocab_size), vocab_table=table,
                             peer_timeout_s=timeout, heartbeat_s=min(0.5, timeout / 4))
    except BaseException:
        if process is not None:
            process.stop()
        raise
    return remote, process


class Engine:
    """Generate with a target model, a draft speculating on its own hardware, exact output.

    ``target``/``draft``: a preset name ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b",
    "smollm2-135m"), a Hugging Face directory, a .gguf file, a native model, a transformers model, a
    callable or a TorchScript module (see ``saguaro.models.load``), or an already loaded model. Both
    None: the default pair. ``mode``: "ssd" (default), "sd" (draft then verify, in turn), "ar"
    (target only; no draft is loaded) or "auto" (a short calibration on this machine picks the
    fastest of them with its K, fan-out and threads, cached per machine and pair; what it chose and
    why is ``engine.auto_choice`` and ``engine.metrics()["auto"]``; ``saguaro.auto_mode``). k, fanout, saguaro_c, backup, cache_policy, strict and the
    thread/core settings override ``speculation`` (default: ``SpeculationConfig`` with the K and
    fan-out budget the planner chose for this device and draft kind in the committed benchmark runs,
    ``saguaro.planned_defaults``). Threads not given use every usable core: all of them for each
    worker in ar and sd (the workers take turns), split between the two in ssd (they run at once; the
    target borrows the draft's while the draft has no work). ``seed`` seeds requests that give none. ``draft_vocab``
    (a count N or a list of ids) makes a native draft score only those ids (the N lowest), its special
    tokens and each prompt's tokens: a cheaper draft forward, the same output distribution
    (``saguaro.models.draft_vocabulary``). ``draft_int8`` ("weight" or "dynamic") builds a native draft's
    projections in int8 (``saguaro.models.linear``): a cheaper draft on the CPU, the same output
    distribution (only acceptance changes). ``quantized=True`` (CPU; presets and .gguf files) keeps the
    GGUF files' quantized weights as they are and runs them on saguaro's quantized kernels
    (``saguaro.models.quant_linear``): the model computed is the GGUF model, as llama.cpp computes it.
    ``quantized=None`` (the default) does so wherever ``saguaro.models.runs_quantized`` says the blocks
    are the model asked for (a GGUF in the kernels' formats, on a SIMD CPU, in bf16, not int8: the
    default pair on a CPU); ``quantized=False`` converts the GGUF to ``dtype``.
    ``draft="tcp://HOST:PORT"`` uses the draft a ``saguaro draft-server`` serves there (another process
    or host; ``saguaro.distributed``); ``draft_process=True`` starts such a server for ``draft`` on this
    host and stops it on close(). ``draft_timeout``: a remote draft silent this long is gone; live
    requests continue autoregressively (finish with "error" under ``strict``) and the engine
    reconnects when a draft-server answers at the address again. ``draft_device`` (e.g. "cuda:1") puts
    an in-process draft on another device than the target's ``device``.

    Thread-safe: several threads may call generate/stream at once; the runtime batches the requests.
    """

    def __init__(self, target: Any = None, draft: Any = None, mode: Optional[str] = None, *,
                 dtype: torch.dtype = torch.bfloat16, device: str = "cpu", seed: int = 0,
                 k: Optional[int] = None, fanout: Union[int, Sequence[int], str, None] = None,
                 fanout_kind: Optional[str] = None, saguaro_c: Optional[float] = None,
                 backup: Optional[str] = None, cache_policy: Optional[str] = None,
                 strict: Optional[bool] = None, speculation: Optional[SpeculationConfig] = None,
                 target_threads: Optional[int] = None, draft_threads: Optional[int] = None,
                 target_cores: Optional[Sequence[int]] = None, draft_cores: Optional[Sequence[int]] = None,
                 draft_vocab: Union[int, Sequence[int], None] = None,
                 draft_int8: Union[bool, str] = False, quantized: Optional[bool] = None,
                 draft_process: bool = False, draft_timeout: float = 5.0,
                 draft_device: Optional[str] = None) -> None:
        self._closed = True  # until the runtime exists, so close()/__del__ are safe
        self._runtime = None
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype must be a torch dtype (torch.bfloat16, torch.float32, ...), got {dtype!r}")
        if draft_int8 not in (False, None, True, "weight", "dynamic"):
            raise ValueError(f"draft_int8 must be 'weight' (weight-only int8), 'dynamic' (int8 weights and "
                             f"activations) or False, got {draft_int8!r}")
        auto = mode == "auto"
        if auto and str(device) != "cpu":
            raise NotImplementedError(f"mode='auto' calibrates CPU threads and cores; on device {device!r} "
                                      f"pass mode='ssd', 'sd' or 'ar'")
        given = dict(k=k, fanout=fanout, fanout_kind=fanout_kind, saguaro_c=saguaro_c, backup=backup,
                     cache_policy=cache_policy, strict=strict, target_threads=target_threads,
                     draft_threads=draft_threads, target_cores=target_cores, draft_cores=draft_cores)
        fixed = _fixed_fields(speculation, given)
        if speculation is None:
            planned_k, planned_budget = planned_shape(device, draft_int8, _draft_on_blocks(
                target, draft, quantized, dtype=dtype, device=draft_device or device, draft_int8=draft_int8))
            speculation = SpeculationConfig(k=planned_k, fanout_budget=planned_budget)
        self.config = resolve_speculation(speculation, mode=None if auto else mode, **given)
        if not auto:  # auto calibrates the threads itself
            planned = dict(zip(("target_threads", "draft_threads"), planned_threads(self.config.mode, device)))
            self.config = resolve_speculation(self.config, **{f: v for f, v in planned.items() if f not in fixed})
        self.seed = seed
        from saguaro.distributed.address import is_draft_address

        remote = is_draft_address(draft) or draft_process
        if remote and auto:
            raise NotImplementedError("mode='auto' calibrates a draft in this process; with a remote draft pass "
                                      "mode='ssd' or 'sd'")
        if remote and draft_device is not None:
            raise ValueError("draft_device places a draft this engine loads; a remote draft's device is the "
                             "draft-server's (saguaro draft-server --device ...)")
        if remote and (draft_vocab is not None or draft_int8):
            raise ValueError("draft_vocab and draft_int8 shape a draft this engine loads; a remote draft is "
                             "shaped where it runs (saguaro draft-server --draft-int8 ...)")
        # auto: load the draft (the choice may need it) and decide after loading
        pair = load_pair(target, None if remote else draft,
                         mode="ar" if remote else ("ssd" if auto else self.config.mode), dtype=dtype, device=device,
                         draft_int8=draft_int8, draft_vocab=draft_vocab, quantized=quantized,
                         draft_device=draft_device)
        #: what mode="auto" chose and why (None when the mode was given)
        self.auto_choice = None
        if auto:
            from saguaro import auto_mode

            self.auto_choice = auto_mode.choose(pair.target, pair.draft, pair.tokenizer, self.config, fixed=fixed,
                                                options={"draft_int8": str(draft_int8), "draft_vocab": str(draft_vocab),
                                                         "quantized": getattr(pair.target, "quantized", False)})
            self.config = self.auto_choice.config
        self.mode = self.config.mode
        self.target = pair.target
        self.draft = pair.draft if self.mode != "ar" else None
        self.tokenizer = pair.tokenizer
        self.max_context = pair.max_context
        #: a draft in another process (saguaro.distributed.RemoteDraft) and the process this engine started
        self.remote_draft = self.draft_process = None
        if remote and self.mode != "ar":
            self.remote_draft, self.draft_process = _connect_draft(draft, draft_process, pair, dtype, quantized,
                                                                   self.config, draft_timeout)
            self.max_context = min(self.max_context, int(self.remote_draft.info.max_context))
        try:
            self._runtime = _make_runtime(_EosPerRequest(self.target.adapter),
                                          self.remote_draft or (self.draft.adapter if self.draft else None), self.config)
        except BaseException:
            _close_runtime(_Nothing(), self.remote_draft, self.draft_process)
            raise
        self._finalizer = weakref.finalize(self, _close_runtime, self._runtime, self.remote_draft, self.draft_process)
        # room the runtime needs beyond the generated tokens: the pending token and k draft slots
        slots = self.config.k + 1 if self.mode != "ar" else 1
        self._book = RequestBook(self._runtime, tokenizer=self.tokenizer,
                                 vocab_size=int(self.target.adapter.vocab_size), max_context=self.max_context,
                                 eos_token_ids=pair.eos_token_ids, slots=slots, seed=seed,
                                 owner=type(self).__name__)
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the runtime's workers and free the models' sequences. Closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        self._book.closed = True
        self._finalizer()
        self._book.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def __enter__(self) -> "Engine":
        self._check_open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed: create a new saguaro.{type(self).__name__} "
                               f"to generate again")

    # -- requests ----------------------------------------------------------------------------------
    def generate(self, prompts: Any, sampling: Union[SamplingParams, Sequence[SamplingParams], None] = None, *,
                 chat: bool = False, progress: Optional[bool] = None) -> list[RequestOutput]:
        """Generate for one prompt or many; returns one RequestOutput per prompt, in order.

        A prompt is a string, a list of token ids or a list of chat messages ({"role", "content"});
        ``chat=True`` puts plain strings through the model's chat template as a user message.
        ``sampling``: one SamplingParams for all prompts or one per prompt. ``progress``: show a bar
        (default: when there are many prompts and stderr is a terminal).
        """
        self._check_open()
        prepared = self._book.prepare(prompts, sampling, chat)
        reqs: list[TrackedRequest] = []
        bar = None
        try:
            for prompt, sp in prepared:
                reqs.append(self._book.submit(prompt, sp))
            show = progress if progress is not None else len(reqs) >= _PROGRESS_FROM
            if show:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(reqs), desc="generate", unit="req", disable=None if progress is None else False)
            results: dict[int, dict] = {}

            def finished(req: TrackedRequest, delta: Any) -> None:
                results[req.index] = delta.metrics
                if bar is not None:
                    bar.update(1)

            self._book.run_to_end(reqs, finished)
            return [r.output(results[r.index]) for r in reqs]
        except BaseException:
            self._book.abandon([r for r in reqs if not r.finished], _ABANDON_WAIT_S)
            raise
        finally:
            if bar is not None:
                bar.close()

    def stream(self, prompt: Any, sampling: Optional[SamplingParams] = None, *, chat: bool = False) -> Stream:
        """Submit one prompt now and iterate over its output as rounds commit (StreamDelta items).

        Text that may be the start of a stop string is held back until it is known not to be one;
        on a stop string the request is cancelled and the text cut before it. Closing the stream
        (or leaving a ``with``/``for`` early) cancels the request.
        """
        self._check_open()
        return Stream(self._book, self._book.submit(*self._prepare_one(prompt, sampling, chat)))

    def _prepare_one(self, prompt: Any, sampling: Optional[SamplingParams], chat: bool) -> tuple[Any, SamplingParams]:
        if isinstance(sampling, Sequence):
            raise ValueError("stream() takes one prompt and one SamplingParams")
        from saguaro.prompts import split_prompts

        items = split_prompts(prompt)
        if len(items) != 1:
            raise ValueError(f"stream() takes one prompt, got {len(items)}: call it once per prompt")
        [(p, sp)] = self._book.prepare(items, sampling, chat)
        return p, sp

    def metrics(self) -> dict[str, Any]:
        """The runtime's aggregate figures (rounds, acceptance, cache hits, timings), the summary
        figures derived from them (tokens_per_round, acceptance_rate, cache_hit_rate, ...) and the
        engine's request and token counts."""
        self._check_open()
        m = dict(self._runtime.metrics())
        m.update(self._book.counts())
        # the runtime's "mode" wins: it reads "ar" once a failed draft made it fall back
        m.setdefault("mode", self.mode)
        if self.auto_choice is not None:
            m["auto"] = self.auto_choice.as_dict()
        m["draft_location"] = self._draft_location(m)
        return derive_metrics(m)

    def _draft_location(self, m: dict[str, Any]) -> dict[str, Any]:
        """Where the draft runs: "none" (ar), "thread" (a worker thread in this process) or
        "draft-server" (its address, whether it is connected, what the wire carried, the bytes per
        round, and how long the target waited for the draft: trees it waited for plus chain drafts)."""
        if self.remote_draft is None:
            return {"where": "thread" if self.draft is not None else "none"}
        where = self.remote_draft.stats()
        if self.draft_process is not None:
            where["process"] = self.draft_process.pid
        rounds = m.get("batched_rounds") or 0
        wire = where["wire"]
        where["bytes_per_round"] = (wire["bytes_out"] + wire["bytes_in"]) / rounds if rounds else 0.0
        where["target_waited_s"] = (float(m.get("wait_for_tree_s", 0.0)) + float(m.get("backup_s", 0.0))
                                    + float(m.get("remote_q_wait_s", 0.0)))
        return where
