"""NativeModelAdapter: the adapter protocol over the native decoder, its KV slots and tree attention."""
from __future__ import annotations

import os
import threading
from typing import Callable, Sequence

import torch

from saguaro.kernels.threads import set_kernel_threads
from saguaro.models._validation import check_batch, check_tree_args, context_error
from saguaro.models import attention
from saguaro.models.attention import AttentionGroup
from saguaro.models.decoder import DecoderModel
from saguaro.models.draft_vocabulary import DraftVocabulary, kept_ids
from saguaro.models.kv_cache import KVCache, SequenceKV, TreeState
from saguaro.models.step_graphs import StepGraphs

DEFAULT_MAX_CONTEXT = 4096
DEFAULT_SCRATCH_TOKENS = 256
#: trees whose plans are kept: one live tree per runtime sharing the model (each steps only its newest)
_MAX_TREES = 8


class NativeModelAdapter:
    """Runs a `DecoderModel` for many sequences, each with its own preallocated KV slot.

    Args:
        model: the native decoder (weights on its device, in its dtype).
        max_context: longest sequence (prompt + generated + speculation); default
            min(4096, the model's max_position_embeddings). Each slot preallocates
            max_context + scratch_tokens positions per layer.
        scratch_tokens: room for branch tokens of one tree per sequence
            (rows of that sequence x depth reached); a larger tree raises ValueError.
        eos_token_ids: overrides the config's EOS ids.
        num_threads: if set, every call first gives saguaro's kernels (projections, attention)
            num_threads threads in the calling thread and torch's own operators one
            (saguaro.kernels.threads says why; an fp32 model, whose projections are torch's, gives
            torch num_threads too); both settings are per calling thread, so a target and a draft
            worker each keep their own.
        cuda_graphs: replay the small forwards of one sequence (decode, verification, tree steps) as
            CUDA graphs (saguaro.models.step_graphs). None: on for a model on CUDA unless the
            environment sets SAGUARO_CUDA_GRAPHS=0; True on the CPU runs the same fixed-shape forwards
            eagerly (what the tests compare).

    One adapter object must be called from one thread at a time (a lock enforces it); the target
    and the draft are separate objects with separate state and can run concurrently.
    """

    def __init__(self, model: DecoderModel, *, max_context: int | None = None,
                 scratch_tokens: int = DEFAULT_SCRATCH_TOKENS, eos_token_ids: Sequence[int] | None = None,
                 num_threads: int | None = None, cuda_graphs: bool | None = None) -> None:
        c = model.config
        if max_context is None:
            max_context = min(DEFAULT_MAX_CONTEXT, c.max_position_embeddings)
        if max_context < 1:
            raise ValueError(f"max_context must be >= 1, got {max_context}")
        if max_context > c.max_position_embeddings:
            raise ValueError(f"max_context {max_context} exceeds the model's max_position_embeddings "
                             f"{c.max_position_embeddings}")
        if scratch_tokens < 0:
            raise ValueError(f"scratch_tokens must be >= 0, got {scratch_tokens}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 (or None), got {num_threads}")
        self.num_threads = num_threads
        self.model = model
        self.config = c
        self.vocab_size: int = c.vocab_size
        self.max_context: int = int(max_context)
        self.scratch_tokens = int(scratch_tokens)
        self.eos_token_ids: list[int] = list(eos_token_ids if eos_token_ids is not None else c.eos_token_ids)
        self.device = model.device
        capacity = self.max_context + self.scratch_tokens
        self._rotary = model.rotary(capacity)
        if cuda_graphs is None:
            cuda_graphs = model.device.type == "cuda" and os.environ.get("SAGUARO_CUDA_GRAPHS", "1").strip() != "0"
        self._graphs = StepGraphs(model, self._rotary, capture=model.device.type == "cuda") if cuda_graphs else None
        # the step graphs attend over a fixed span that may reach past what was written (kv_cache._new_slot)
        self._cache = KVCache(c, capacity, model.dtype, model.device,
                              zeroed=cuda_graphs or model.device.type != "cpu")
        self._lock = threading.Lock()
        # (seq_ids, visible) -> (row permutation, per-sequence plan) of the live trees: one per runtime
        # sharing this model (their sequence ids differ), the oldest dropped beyond _MAX_TREES
        self._trees: dict[tuple, tuple] = {}
        self._vocab: DraftVocabulary | None = None
        self._prompts: dict[int, list[int]] = {}  # live sequences' prompts (a pruned vocabulary adds their ids)

    # ------------------------------------------------------------------ draft vocabulary
    def restrict_vocabulary(self, keep: int | Sequence[int] | None, *, always: Sequence[int] = (),
                            with_prompts: bool = True) -> None:
        """Score only some token ids (a DRAFT model only: every other id gets logit -inf, q = 0).

        keep: a count N (ids 0..N-1: byte-level BPE assigns low ids to frequent tokens) or a list of
        ids; None scores the whole vocabulary again. ``always`` (special tokens) and this adapter's
        EOS ids are added; with_prompts also adds each live sequence's prompt tokens. The output
        distribution of speculative decoding does not change, only acceptance (see
        saguaro.models.draft_vocabulary). ValueError for ids outside the vocabulary or an int8 head.
        """
        with self._lock:
            if keep is None:
                self._vocab = None
                return
            base = kept_ids(self.vocab_size, keep, [*always, *self.eos_token_ids])
            vocab = DraftVocabulary(self.model.head, base, self.device, with_prompts=with_prompts)
            for s, prompt in self._prompts.items():
                vocab.add_sequence(s, prompt)
            self._vocab = vocab

    def graph_stats(self) -> dict | None:
        """CUDA-graph captures, replays and eager fallbacks (None: graphs are off for this adapter)."""
        return self._graphs.stats() if self._graphs is not None else None

    @property
    def draft_vocabulary(self) -> DraftVocabulary | None:
        """The pruned vocabulary set by restrict_vocabulary (None: every id is scored)."""
        return self._vocab

    # ------------------------------------------------------------------ protocol
    def prefill(self, seq_ids: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Allocate the sequences and run their prompts; logits [B, V] at each last prompt position."""
        check_batch(seq_ids, prompts, "prompts", self.vocab_size)
        with self._lock, torch.inference_mode():
            self._set_threads()
            for s, p in zip(seq_ids, prompts):
                if len(p) > self.max_context:
                    raise context_error(s, len(p), self.max_context)
            slots = [self._cache.allocate(s) for s in seq_ids]
            for s, p in zip(seq_ids, prompts):
                self._prompts[s] = list(p)
                if self._vocab is not None:
                    self._vocab.add_sequence(s, p)
            try:
                return self._run_extend(slots, prompts, last_only=True)
            except BaseException:
                for s in seq_ids:
                    self._forget(s)
                raise

    def extend(self, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
        """Append tokens to each sequence; logits [sum len, V] ordered by sequence then position."""
        check_batch(seq_ids, tokens, "tokens", self.vocab_size)
        with self._lock, torch.inference_mode():
            self._set_threads()
            slots = [self._cache.get(s) for s in seq_ids]
            for s, kv, t in zip(seq_ids, slots, tokens):
                if kv.length + len(t) > self.max_context:
                    raise context_error(s, kv.length + len(t), self.max_context)
            return self._run_extend(slots, tokens, last_only=False)

    def tree_step(self, seq_ids: list[int], visible: list[int], tokens: list[int], depth: int) -> torch.Tensor:
        """One step of branch decoding (docs/contracts.md §3); logits [N, V] in row order."""
        check_tree_args(seq_ids, visible, tokens, depth, self.vocab_size)
        n = len(seq_ids)
        with self._lock, torch.inference_mode():
            self._set_threads()
            key = (tuple(seq_ids), tuple(visible))
            if depth == 0:
                plan = self._start_tree(seq_ids, visible)
                self._trees.pop(key, None)
                self._trees[key] = plan
                while len(self._trees) > _MAX_TREES:
                    self._trees.pop(next(iter(self._trees)))
            else:
                plan = self._trees.get(key)
                if plan is None:
                    raise ValueError("tree_step with depth > 0 must repeat the rows (seq_ids, visible) of the "
                                     "depth-0 call in the same order")
            perm, per_seq = plan
            groups: list[AttentionGroup] = []
            row = 0
            for s, kv, local_rows in per_seq:
                tree = kv.tree
                if tree is None or tree.depth != depth:
                    expected = "0 (the tree was discarded by extend/truncate/prefill)" if tree is None else tree.depth
                    raise ValueError(f"tree_step depth {depth} for sequence {s}, expected depth {expected}")
                m = len(local_rows)
                write = tree.start + depth * m
                kv_len = write + m
                if kv_len > kv.capacity:
                    raise ValueError(f"tree of sequence {s} needs {kv_len - tree.start} scratch KV slots after its "
                                     f"{tree.start} tokens, more than its slot holds (max_context + scratch_tokens = "
                                     f"{self.max_context} + {self.scratch_tokens}): construct the adapter with a "
                                     "larger scratch_tokens")
                branches = (torch.tensor(tree.visible, dtype=torch.int64), tree.start + torch.arange(m), m, depth + 1)
                groups.append(AttentionGroup(kv, row, row + m, write, kv_len, self._tree_mask(tree, m, depth),
                                             branches=branches))
                row += m
            if self._graphs is not None and len(per_seq) == 1 and self._vocab is None and perm == list(range(n)):
                kv = per_seq[0][1]
                write = kv.tree.start + depth * n  # type: ignore[union-attr]
                logits = self._graphs.run(kv, list(tokens), [v + depth for v in visible], list(range(write, write + n)),
                                          groups[0].mask)
                if logits is not None:
                    kv.tree.depth = depth + 1  # type: ignore[union-attr]
                    return _runtime_f32(logits)
            dev = self.device
            perm_t = torch.tensor(perm, dtype=torch.int64)
            flat_tokens = torch.tensor(tokens, dtype=torch.int64)[perm_t].to(dev)
            positions = (torch.tensor(visible, dtype=torch.int64)[perm_t] + depth).to(dev)
            cos, sin = self._rotary.lookup(positions)
            logits = self.model.forward(flat_tokens, cos, sin, groups, head=self._head())
            for _, kv, _ in per_seq:
                kv.tree.depth = depth + 1  # type: ignore[union-attr]
            if perm != list(range(n)):
                inverse = torch.empty(n, dtype=torch.int64)
                inverse[perm_t] = torch.arange(n)
                logits = logits[inverse.to(logits.device)]
            return _runtime_f32(logits)

    def truncate(self, seq_id: int, length: int) -> None:
        """Drop KV positions >= length (0 <= length <= current length)."""
        with self._lock:
            kv = self._cache.get(seq_id)
            if not 0 <= length <= kv.length:
                raise ValueError(f"cannot truncate sequence {seq_id} of length {kv.length} to {length}")
            kv.length = int(length)
            kv.tree = None

    def length(self, seq_id: int) -> int:
        """KV positions held by the sequence."""
        with self._lock:
            return self._cache.get(seq_id).length

    def release(self, seq_id: int) -> None:
        """Free the sequence's slot (kept for reuse); unknown ids are ignored."""
        with self._lock:
            self._forget(seq_id)

    # ------------------------------------------------------------------ internals
    def _forget(self, seq_id: int) -> None:
        self._cache.release(seq_id)
        self._prompts.pop(seq_id, None)
        if self._vocab is not None:
            self._vocab.drop_sequence(seq_id)

    def _head(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return self._vocab.logits if self._vocab is not None else None

    def use_threads(self, threads: int) -> None:
        """Give the calling thread ``threads`` threads for this model: saguaro's kernels run on all of them,
        torch's own operators (norms, rotary, residual adds: tiny at decode sizes) on one, because torch's
        pool waking on the other cores collides with the kernels' spinning one (saguaro.kernels.threads).
        An fp32 model's projections are torch matmuls (saguaro's kernels take bf16): they keep the threads.
        The runtime's workers call this (saguaro.runtime); ``num_threads`` applies it on every call."""
        set_kernel_threads(threads)
        torch_threads = threads if self.model.dtype == torch.float32 else 1
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)

    def _set_threads(self) -> None:
        if self.num_threads is not None:
            self.use_threads(self.num_threads)

    def _run_extend(self, slots: list[SequenceKV], rows: list[list[int]], last_only: bool) -> torch.Tensor:
        dev = self.device
        if self._graphs is not None and len(slots) == 1 and not last_only and self._vocab is None:
            kv, t = slots[0], rows[0]
            base, n = kv.length, len(t)
            causal = torch.arange(base + n, device=dev)[None, :] <= torch.arange(base, base + n, device=dev)[:, None]
            where = list(range(base, base + n))
            logits = self._graphs.run(kv, list(t), where, where, causal)
            if logits is not None:
                kv.length += n
                kv.tree = None
                return _runtime_f32(logits)
        groups = []
        positions: list[int] = []
        flat: list[int] = []
        last_rows: list[int] = []
        start = 0
        for kv, t in zip(slots, rows):
            n = len(t)
            base = kv.length
            kv_len = base + n
            mask = None
            # longer chains (prefills) where SDPA runs: one masked call per layer. The kernel takes any
            # length unmasked, on every kernel thread (SDPA runs on the one torch thread a bf16 model
            # keeps: use_threads), about twice as fast at 1,500 tokens on two cores
            if n > attention.ROW_BY_ROW_MAX and not attention.kernel_runs(self.model.dtype, dev):
                mask = (torch.arange(kv_len, device=dev)[None, :]
                        <= torch.arange(base, kv_len, device=dev)[:, None])
            groups.append(AttentionGroup(kv, start, start + n, base, kv_len, mask, causal=True))
            positions.extend(range(base, kv_len))
            flat.extend(t)
            start += n
            last_rows.append(start - 1)
        cos, sin = self._rotary.lookup(torch.tensor(positions, dtype=torch.int64, device=dev))
        sel = None
        if last_only and start != len(slots):
            sel = torch.tensor(last_rows, dtype=torch.int64, device=dev)
        logits = self.model.forward(torch.tensor(flat, dtype=torch.int64, device=dev), cos, sin, groups, sel,
                                    head=self._head())
        for kv, t in zip(slots, rows):
            kv.length += len(t)
            kv.tree = None
        return _runtime_f32(logits)

    def _start_tree(self, seq_ids: list[int], visible: list[int]) -> tuple[list[int], list]:
        order: dict[int, list[int]] = {}
        for i, s in enumerate(seq_ids):
            order.setdefault(s, []).append(i)
        per_seq = []
        perm: list[int] = []
        for s, local in order.items():
            kv = self._cache.get(s)
            vis = [visible[i] for i in local]
            for v in vis:
                if not 0 <= v <= kv.length:
                    raise ValueError(f"tree_step: visible {v} for sequence {s} outside [0, its length {kv.length}]")
            kv.tree = TreeState(rows=local, visible=vis, start=kv.length, depth=0)
            per_seq.append((s, kv, local))
            perm.extend(local)
        return perm, per_seq

    def _tree_mask(self, tree: TreeState, m: int, depth: int) -> torch.Tensor:
        dev = self.device
        kv_len = tree.start + (depth + 1) * m
        vis = torch.tensor(tree.visible, dtype=torch.int64, device=dev)
        prefix = torch.arange(tree.start, device=dev)[None, :] < vis[:, None]
        own = (torch.arange((depth + 1) * m, device=dev) % m)[None, :] == torch.arange(m, device=dev)[:, None]
        mask = torch.cat((prefix, own), dim=1)
        assert mask.shape == (m, kv_len)
        return mask


def _runtime_f32(logits: torch.Tensor) -> torch.Tensor:
    """float32 rows for the runtime, left on their device where its CUDA kernels can read them there
    (the device-resident contract, docs/contracts.md §3), else on the host."""
    if logits.device.type == "cuda" and not _device_rows_supported():
        logits = logits.cpu()
    if logits.dtype != torch.float32:
        logits = logits.float()
    return logits.contiguous()


def _device_rows_supported() -> bool:
    from saguaro import _core

    return bool(_core.kernels_have_cuda)
