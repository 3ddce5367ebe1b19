"""The public engine: load a target and a draft, validate requests, run them on the runtime."""
from __future__ import annotations

import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

from saguaro.speculation_config import SpeculationConfig
from saguaro.planned_defaults import planned_shape
from saguaro.prompts import Prompt, encode_prompt, split_prompts
from saguaro.results import RequestOutput, StreamDelta, derive_metrics
from saguaro.sampling_params import SamplingParams
from saguaro.speculation_config import resolve_speculation
from saguaro.stop import OutputText
from saguaro.stream import Stream

#: generate() shows a progress bar from this many prompts on (when stderr is a terminal)
_PROGRESS_FROM = 8
#: how long generate() waits on one request before looking at the next (seconds)
_POLL_SLICE = 0.02


def _load_model(spec: Any, *, dtype: torch.dtype, device: str, role: str, int8: Union[bool, str] = False) -> Any:
    """A LoadedModel for spec (an already loaded one passes through)."""
    if hasattr(spec, "adapter") and hasattr(spec, "tokenizer"):
        if int8:
            raise ValueError(f"draft_int8={int8!r} applies when the engine loads the {role} itself; this one is "
                             f"already loaded: pass int8= to saguaro.models.load instead")
        return spec
    try:
        from saguaro import models
    except ImportError as e:  # pragma: no cover - the package ships saguaro.models
        raise ImportError(f"saguaro.models cannot be imported ({e}); reinstall saguaro") from e
    return models.load(spec, dtype=dtype, device=device, int8=int8)


def _default_pair() -> tuple[Any, Any]:
    from saguaro import models

    return models.default_pair()


def _check_vocab(target: Any, draft: Any) -> None:
    tv, dv = target.adapter.vocab_size, draft.adapter.vocab_size
    if tv != dv:
        raise ValueError(f"the target's vocabulary has {tv} entries but the draft's {dv}: the draft must "
                         f"share the target's tokenizer (pick a draft of the same model family)")
    if target.tokenizer is not None and draft.tokenizer is not None:
        _check_tokenizers(target.tokenizer, draft.tokenizer)


def _check_tokenizers(target_tokenizer: Any, draft_tokenizer: Any) -> None:
    from saguaro import models

    models.check_vocab_compatible(target_tokenizer, draft_tokenizer)


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
    from saguaro.runtime import Runtime

    return Runtime(target_adapter, draft_adapter, config)


def _update_tokens(update: Any) -> list[int]:
    for name in ("new_tokens", "tokens", "token_ids"):
        v = getattr(update, name, None)
        if v is not None:
            return [int(t) for t in v]
    return []


def _no_text(ids: Sequence[int]) -> str:
    # a model loaded without a tokenizer (a callable, a bare module) produces token ids only
    return ""


@dataclass
class _Request:
    """The engine's book-keeping for one submitted request."""

    runtime_id: int
    index: int
    prompt: Prompt
    out: OutputText
    started: float
    first_token: Optional[float] = None
    finished: bool = False
    finish_reason: Optional[str] = None
    runtime_metrics: dict = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The runtime's per-request figures plus the engine's timings."""
        end = time.perf_counter()
        m = dict(self.runtime_metrics)
        n = len(self.out.token_ids)
        m.setdefault("prompt_tokens", len(self.prompt.token_ids))
        m["generated_tokens"] = n
        m.setdefault("elapsed_s", end - self.started)
        if self.first_token is not None:
            m.setdefault("time_to_first_token_s", self.first_token - self.started)
            decode_s = end - self.first_token
            if n > 1 and decode_s > 0:
                m.setdefault("decode_tokens_per_s", (n - 1) / decode_s)
        if m["elapsed_s"] > 0:
            m.setdefault("tokens_per_s", n / m["elapsed_s"])
        return derive_metrics(m)


class Engine:
    """Generate with a target model, a draft speculating on its own hardware, exact output.

    ``target``/``draft``: a preset name ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b",
    "smollm2-135m"), a Hugging Face directory, a .gguf file, a native model, a transformers model, a
    callable or a TorchScript module (see ``saguaro.models.load``), or an already loaded model. Both
    None: the default pair. ``mode``: "ssd" (default), "sd" (draft then verify, in turn) or "ar"
    (target only; no draft is loaded). k, fanout, saguaro_c, backup, cache_policy, strict and the
    thread/core settings override ``speculation`` (default: ``SpeculationConfig`` with the K and
    fan-out budget the planner chose for this device and draft kind in the committed benchmark runs,
    ``saguaro.planned_defaults``). ``seed`` seeds requests that give none. ``draft_vocab``
    (a count N or a list of ids) makes a native draft score only those ids (the N lowest), its special
    tokens and each prompt's tokens: a cheaper draft forward, the same output distribution
    (``saguaro.models.draft_vocabulary``). ``draft_int8`` ("weight" or "dynamic") builds a native draft's
    projections in int8 (``saguaro.models.linear``): a cheaper draft on the CPU, the same output
    distribution (only acceptance changes).

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
                 draft_int8: Union[bool, str] = False) -> None:
        self._closed = True  # until the runtime exists, so close()/__del__ are safe
        self._runtime = None
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype must be a torch dtype (torch.bfloat16, torch.float32, ...), got {dtype!r}")
        if draft_int8 not in (False, None, True, "weight", "dynamic"):
            raise ValueError(f"draft_int8 must be 'weight' (weight-only int8), 'dynamic' (int8 weights and "
                             f"activations) or False, got {draft_int8!r}")
        if speculation is None:
            planned_k, planned_budget = planned_shape(device, draft_int8)
            speculation = SpeculationConfig(k=planned_k, fanout_budget=planned_budget)
        self.config = resolve_speculation(
            speculation, mode=mode, k=k, fanout=fanout, fanout_kind=fanout_kind, saguaro_c=saguaro_c,
            backup=backup, cache_policy=cache_policy, strict=strict, target_threads=target_threads,
            draft_threads=draft_threads, target_cores=target_cores, draft_cores=draft_cores)
        self.mode = self.config.mode
        self.seed = seed
        if target is None:
            default_target, default_draft = _default_pair()
            target = default_target
            if draft is None and self.mode != "ar":
                draft = default_draft
        if draft is None and self.mode != "ar":
            raise ValueError(f"mode {self.mode!r} needs a draft model: pass draft=... (a model sharing the "
                             f"target's tokenizer) or use mode='ar' for the target alone")
        self.target = _load_model(target, dtype=dtype, device=device, role="target")
        self.draft = None
        if self.mode != "ar":
            self.draft = _load_model(draft, dtype=dtype, device=device, role="draft", int8=draft_int8)
            if self.draft.adapter is self.target.adapter:
                raise ValueError("the target and the draft are the same model instance; each keeps its own KV cache, "
                                 "so load the model twice (or pass the same preset name or path twice)")
            _check_vocab(self.target, self.draft)
            if draft_vocab is not None:
                from saguaro import models

                models.restrict_draft_vocabulary(self.draft, draft_vocab)
        self.tokenizer = self.target.tokenizer
        self.max_context = int(self.target.adapter.max_context)
        if self.draft is not None:
            self.max_context = min(self.max_context, int(self.draft.adapter.max_context))
        self._eos_token_ids = [int(t) for t in (getattr(self.target.adapter, "eos_token_ids", None) or [])]
        self._runtime = _make_runtime(_EosPerRequest(self.target.adapter),
                                      self.draft.adapter if self.draft else None, self.config)
        self._finalizer = weakref.finalize(self, self._runtime.close)
        self._lock = threading.Lock()
        self._next_index = 0
        self._requests_done = 0
        self._tokens_done = 0
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the runtime's workers and free the models' sequences. Closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

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
            raise RuntimeError("this Engine is closed: create a new saguaro.Engine to generate again")

    # -- requests ----------------------------------------------------------------------------------
    def _prepare(self, prompts: Any, sampling: Any, chat: bool) -> list[tuple[Prompt, SamplingParams]]:
        items = split_prompts(prompts)
        if sampling is None:
            sampling = SamplingParams()
        if isinstance(sampling, SamplingParams):
            params = [sampling] * len(items)
        elif isinstance(sampling, Sequence) and all(isinstance(s, SamplingParams) for s in sampling):
            params = list(sampling)
            if len(params) != len(items):
                raise ValueError(f"got {len(params)} SamplingParams for {len(items)} prompts: pass one for all "
                                 f"prompts or one per prompt")
        else:
            raise ValueError(f"sampling must be a SamplingParams or a list of them, got {type(sampling).__name__}")
        vocab = int(self.target.adapter.vocab_size)
        # room the runtime needs beyond the generated tokens: the pending token and k draft slots
        slots = self.config.k + 1 if self.mode != "ar" else 1
        out = []
        for i, (p, sp) in enumerate(zip(items, params)):
            if self.tokenizer is None and sp.stop:
                raise ValueError("stop strings need a tokenizer and this target has none: use stop_token_ids")
            prompt = encode_prompt(p, self.tokenizer, vocab, chat=chat, index=i)
            n = len(prompt.token_ids)
            if n + slots > self.max_context:
                raise ValueError(f"prompt {i} has {n} tokens but the model's context holds {self.max_context} "
                                 f"(with {slots} speculation slots): shorten the prompt")
            if n + sp.max_new_tokens + slots > self.max_context:
                raise ValueError(f"prompt {i} has {n} tokens and max_new_tokens is {sp.max_new_tokens}, more "
                                 f"than the model's context of {self.max_context} tokens (with {slots} speculation "
                                 f"slots): lower max_new_tokens to at most {self.max_context - n - slots}")
            out.append((prompt, sp))
        return out

    def _submit(self, prompt: Prompt, sp: SamplingParams) -> _Request:
        with self._lock:
            self._check_open()
            index = self._next_index
            self._next_index += 1
        rp = sp.request_params(eos_token_ids=self._eos_token_ids, engine_seed=self.seed, request_index=index)
        hidden = frozenset(rp.stop_token_ids)
        decode = self.tokenizer.decode if self.tokenizer is not None else _no_text
        out = OutputText(decode=decode, stops=list(sp.stop), hidden_ids=hidden)
        started = time.perf_counter()
        rid = self._runtime.submit(list(prompt.token_ids), rp)
        return _Request(runtime_id=rid, index=index, prompt=prompt, out=out, started=started)

    def _step(self, req: _Request, timeout: Optional[float]) -> StreamDelta:
        """Poll the runtime once for req; apply stop strings; cancel on a stop string match."""
        update = self._runtime.poll(req.runtime_id, timeout)
        for note in getattr(update, "messages", None) or ():
            warnings.warn(f"saguaro request {req.index}: {note}", RuntimeWarning, stacklevel=3)
        tokens = _update_tokens(update)
        if tokens and req.first_token is None:
            req.first_token = time.perf_counter()
        delta = req.out.add(tokens)
        if delta.stopped:
            self._runtime.cancel(req.runtime_id)
            # drain the cancelled request so the runtime can forget it
            while not getattr(update, "finished", False):
                update = self._runtime.poll(req.runtime_id, None)
            return self._finish(req, delta, "stop", update)
        if getattr(update, "finished", False):
            reason = getattr(update, "finish_reason", None) or "stop"
            if reason == "error":
                req.finished = True
                raise RuntimeError(f"request {req.index} failed in the runtime: {getattr(update, 'error', '')}")
            tail = req.out.finish()
            return self._finish(req, StreamDelta(delta.text + tail.text, delta.token_ids), reason, update)
        return StreamDelta(delta.text, delta.token_ids)

    def _finish(self, req: _Request, delta: Any, reason: str, update: Any) -> StreamDelta:
        req.finished = True
        req.finish_reason = reason
        req.runtime_metrics = dict(getattr(update, "metrics", None) or {})
        with self._lock:
            self._requests_done += 1
            self._tokens_done += len(req.out.token_ids)
        return StreamDelta(delta.text, list(delta.token_ids), True, reason, req.metrics())

    def _output(self, req: _Request, metrics: dict) -> RequestOutput:
        return RequestOutput(request_id=req.index, prompt=req.prompt.original,
                             prompt_token_ids=list(req.prompt.token_ids), text=req.out.text,
                             token_ids=list(req.out.token_ids), finish_reason=req.finish_reason or "stop",
                             metrics=metrics)

    def generate(self, prompts: Any, sampling: Union[SamplingParams, Sequence[SamplingParams], None] = None, *,
                 chat: bool = False, progress: Optional[bool] = None) -> list[RequestOutput]:
        """Generate for one prompt or many; returns one RequestOutput per prompt, in order.

        A prompt is a string, a list of token ids or a list of chat messages ({"role", "content"});
        ``chat=True`` puts plain strings through the model's chat template as a user message.
        ``sampling``: one SamplingParams for all prompts or one per prompt. ``progress``: show a bar
        (default: when there are many prompts and stderr is a terminal).
        """
        self._check_open()
        prepared = self._prepare(prompts, sampling, chat)
        reqs: list[_Request] = []
        bar = None
        try:
            for prompt, sp in prepared:
                reqs.append(self._submit(prompt, sp))
            show = progress if progress is not None else len(reqs) >= _PROGRESS_FROM
            if show:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(reqs), desc="generate", unit="req", disable=None if progress is None else False)
            results: dict[int, dict] = {}
            pending = list(reqs)
            while pending:
                slice_s = _POLL_SLICE if len(pending) > 1 else None
                still = []
                for req in pending:
                    d = self._step(req, slice_s)
                    if d.finished:
                        results[req.index] = d.metrics
                        if bar is not None:
                            bar.update(1)
                    else:
                        still.append(req)
                pending = still
            return [self._output(r, results[r.index]) for r in reqs]
        except BaseException:
            self._abandon([r for r in reqs if not r.finished])
            raise
        finally:
            if bar is not None:
                bar.close()

    def _abandon(self, reqs: list[_Request], wait_s: float = 5.0) -> None:
        """Cancel requests whose caller gave up, and collect their final updates (briefly) so the
        runtime can forget them."""
        if self._closed:
            return
        for r in reqs:
            r.finished = True
            try:
                self._runtime.cancel(r.runtime_id)
            except Exception:
                pass
        deadline = time.monotonic() + wait_s
        for r in reqs:
            try:
                while time.monotonic() < deadline:
                    if getattr(self._runtime.poll(r.runtime_id, max(0.0, deadline - time.monotonic())), "finished", False):
                        break
            except Exception:
                pass

    def stream(self, prompt: Any, sampling: Optional[SamplingParams] = None, *, chat: bool = False) -> "Stream":
        """Submit one prompt now and iterate over its output as rounds commit (StreamDelta items).

        Text that may be the start of a stop string is held back until it is known not to be one;
        on a stop string the request is cancelled and the text cut before it. Closing the stream
        (or leaving a ``with``/``for`` early) cancels the request.
        """
        self._check_open()
        if isinstance(sampling, Sequence):
            raise ValueError("stream() takes one prompt and one SamplingParams")
        items = split_prompts(prompt)
        if len(items) != 1:
            raise ValueError(f"stream() takes one prompt, got {len(items)}: call it once per prompt")
        [(p, sp)] = self._prepare(items, sampling, chat)
        return Stream(self, self._submit(p, sp))

    def metrics(self) -> dict[str, Any]:
        """The runtime's aggregate figures (rounds, acceptance, cache hits, timings), the summary
        figures derived from them (tokens_per_round, acceptance_rate, cache_hit_rate, ...) and the
        engine's request and token counts."""
        self._check_open()
        m = dict(self._runtime.metrics())
        with self._lock:
            m["requests_finished"] = self._requests_done
            m["tokens_generated"] = self._tokens_done
            m["requests_submitted"] = self._next_index
        # the runtime's "mode" wins: it reads "ar" once a failed draft made it fall back
        m.setdefault("mode", self.mode)
        return derive_metrics(m)
