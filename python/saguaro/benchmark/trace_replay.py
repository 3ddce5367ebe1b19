"""Trace replay: run the real loop on random-weight models of real shapes, with the verification
outcomes and cache hits of a recorded (or stated) trace. A measurement tool, never a default.

Why: a forward's time does not depend on the weight values, but acceptance and cache hits do, and the
real weights cannot reach the GPU machine. So the GPU benchmark runs random-weight models of the real
shapes (``random_decoder``) and forces, round by round, the outcome a trace says: every forward, tree
step and kernel runs in its real amount; only the returned logits rows are edited so that greedy
verification accepts exactly the trace's k and the bonus token is (or is not) one the draft's tree
forked on.

Two adapter wrappers (the adapter contract, docs/contracts.md §3):

- ``ReplayDraft(adapter)`` makes the draft's top tokens at every position a known function
  ``g(p, rank)`` of the position ``p`` of the token the row predicts: it sets the logits of
  ``g(p, 0..R-1)`` above the row's maximum, in descending order (a ramp). So the greedy draft always
  drafts ``g(p, 0)`` and its fan-out candidates at outcome position j (docs/algorithm.md §2.1: the
  top-F_j tokens of L_j, leaving out the drafted x_{j+1} for j < K) are the first F_j ramp tokens
  other than x_{j+1}.
- ``ReplayTarget(adapter, trace, draft)`` runs the real verification forward, then for round i of a
  sequence (trace entry (k, hit)) overwrites rows 0..k-1 so that their argmax is the drafted token
  x_{i+1} and row k so that its argmax is the bonus: on a hit the first ramp token the fork takes
  at that position (``g(p, 0)`` after all accepted; the first ``g(p, r) != x_{k+1}`` after a
  rejection); on a miss ``g(p, R)`` (or ``g(p, R+1)``), a token of rank >= R in the draft's row, which
  no fan-out of at most R - 1 candidates holds.

Limits (counted, never hidden):

- A trace k above the round's drafts n (a shortened speculation near max_new_tokens) is realised as
  k = n (``RoundRecord.clipped``).
- A hit needs F_j >= 1 at the outcome's position (j = k after a rejection, K when all n drafts were
  accepted). A geometric or uniform schedule with budget M >= K+1 gives every position at least one
  branch; with M < K+1 or a manual schedule with zeros the runtime records a miss there:
  ``ReplayTarget.summary(fanout)`` counts those rounds as ``impossible_hits``.
- The runtime looks the outcome up only for rounds whose row built a tree (not the last rounds of a
  request, docs/algorithm.md §2.1) and whose request goes on; the first rounds' hit flags are
  realised, the last ones' are not looked up.
- Greedy only (temperature 0): sampled verification draws from the rows, which replay does not model.

The edits are torch ops on the logits' own device (an amax per edited row and a scatter; the only
host-to-device traffic is the few token and position ids), so the measured loop pays almost nothing
for the replay. Everything run under replay must say so: both wrappers carry ``replayed = True``.
"""
from __future__ import annotations

import json
import random
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from saguaro.benchmark.speed_model import accepted_distribution, fit_acceptance

#: ramp length R: the draft's top R tokens at each position are g(p, 0..R-1); fan-outs must stay below it
DEFAULT_RAMP = 32
#: position stride of g (a prime, so neighbouring positions' ramps differ)
_STRIDE = 7919


# ------------------------------------------------------------------------------------------ trace
@dataclass(frozen=True)
class ReplayTrace:
    """Per-round verification outcomes: accepted drafts k (0..K) and whether the bonus was a cache hit.

    Rounds beyond the trace's length wrap around. ``source`` says where it came from (recorded from a
    run, or generated from a stated acceptance and hit rate, with its seed).
    """

    k: int
    accepted: tuple[int, ...]
    hits: tuple[bool, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"a trace needs K >= 1, got {self.k}")
        if not self.accepted or len(self.accepted) != len(self.hits):
            raise ValueError("a trace needs as many hit flags as accepted counts, at least one round")
        bad = [a for a in self.accepted if not 0 <= a <= self.k]
        if bad:
            raise ValueError(f"accepted counts must be in [0, K = {self.k}], got {bad[:5]}")

    def __len__(self) -> int:
        return len(self.accepted)

    def round(self, i: int) -> tuple[int, bool]:
        """(k, hit) of round i (wrapping)."""
        j = i % len(self.accepted)
        return self.accepted[j], self.hits[j]

    @property
    def histogram(self) -> list[int]:
        """Rounds that accepted j drafts, j = 0..K."""
        h = [0] * (self.k + 1)
        for a in self.accepted:
            h[a] += 1
        return h

    @property
    def acceptance(self) -> float:
        """The capped-geometric a of the trace's histogram (speed_model.fit_acceptance)."""
        return fit_acceptance(self.histogram)

    @property
    def hit_rate(self) -> float:
        """Share of rounds whose bonus the draft's tree covered."""
        return sum(self.hits) / len(self.hits)

    @property
    def tokens_per_round(self) -> float:
        """Mean committed tokens per round (accepted + the bonus) with K drafts every round."""
        return sum(self.accepted) / len(self.accepted) + 1.0

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def constant(cls, k: int, accepted: int, hit: bool, rounds: int = 64) -> "ReplayTrace":
        """Every round the same outcome (tests; 100% forced hits with hit=True)."""
        return cls(k, (accepted,) * rounds, (hit,) * rounds, f"constant: {accepted} accepted, hit={hit}")

    @classmethod
    def generate(cls, a: float, h: Union[float, Sequence[float]], k: int, rounds: int = 256, seed: int = 0,
                 iid: bool = False) -> "ReplayTrace":
        """A trace from a stated acceptance a (capped geometric, speed_model.accepted_distribution) and
        hit rate h (one rate, or one per outcome position 0..K).

        Default: stratified, the counts of each k (largest remainder of P(k)·rounds) and of hits
        (round(h_k · rounds with that k)) are exact and only their order is random (seeded), so a
        short run already shows the stated a and h. iid=True draws each round independently.
        """
        return cls.from_histogram(accepted_distribution(a, k), h, rounds, seed, iid,
                                  source=f"generated: a={a:g}, h={_fmt_rates(h)}, K={k}, seed={seed}"
                                         f"{', iid' if iid else ''}")

    @classmethod
    def from_histogram(cls, histogram: Sequence[float], h: Union[float, Sequence[float]], rounds: int = 256,
                       seed: int = 0, iid: bool = False, source: str = "") -> "ReplayTrace":
        """A trace with the shape of a recorded accepted-count histogram (counts or shares, K+1 entries)
        and hit rate(s) h, e.g. from a CPU run of the real pair."""
        k = len(histogram) - 1
        total = float(sum(histogram))
        if k < 1 or total <= 0 or any(x < 0 for x in histogram):
            raise ValueError("the histogram needs K+1 >= 2 non-negative entries with a positive sum")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        p = [x / total for x in histogram]
        rates = _rates(h, k)
        rng = random.Random(seed)
        if iid:
            acc = rng.choices(range(k + 1), weights=p, k=rounds)
            hits = [rng.random() < rates[a] for a in acc]
        else:
            counts = _largest_remainder(p, rounds)
            acc, hits = [], []
            for j, n in enumerate(counts):
                nh = int(round(rates[j] * n))
                acc += [j] * n
                hits += [True] * nh + [False] * (n - nh)
            order = list(range(rounds))
            rng.shuffle(order)
            acc, hits = [acc[i] for i in order], [hits[i] for i in order]
        return cls(k, tuple(acc), tuple(hits), source or f"histogram {list(histogram)}, h={_fmt_rates(h)}, seed={seed}")

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], rounds: int = 256, seed: int = 0) -> "ReplayTrace":
        """A trace recorded from an engine's (or runtime's) metrics: its accepted histogram and its hit
        rate per outcome position (hits_per_position / lookups_per_position; a position never looked up
        gets the overall rate)."""
        hist = list(metrics["accepted_histogram"])
        hits = list(metrics.get("hits_per_position") or [])
        looks = list(metrics.get("lookups_per_position") or [])
        overall = sum(hits) / sum(looks) if looks and sum(looks) else 0.0
        rates = [hits[j] / looks[j] if j < len(looks) and looks[j] else overall for j in range(len(hist))]
        return cls.from_histogram(hist, rates, rounds, seed,
                                  source=f"recorded: histogram {hist}, hits {hits} of {looks} lookups, seed={seed}")

    # -- storage --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what travels to the GPU machine: a few kB)."""
        return {"k": self.k, "accepted": list(self.accepted), "hits": [int(x) for x in self.hits],
                "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReplayTrace":
        """The inverse of to_dict."""
        return cls(int(d["k"]), tuple(int(x) for x in d["accepted"]), tuple(bool(x) for x in d["hits"]),
                   str(d.get("source", "")))

    def to_json(self) -> str:
        """to_dict as JSON text."""
        return json.dumps(self.to_dict())


def _rates(h: Union[float, Sequence[float]], k: int) -> list[float]:
    rates = [float(h)] * (k + 1) if isinstance(h, (int, float)) else [float(x) for x in h]
    if len(rates) != k + 1 or any(not 0.0 <= x <= 1.0 for x in rates):
        raise ValueError(f"hit rate must be one number or K+1 = {k + 1} numbers in [0, 1], got {h!r}")
    return rates


def _fmt_rates(h: Union[float, Sequence[float]]) -> str:
    return f"{h:g}" if isinstance(h, (int, float)) else "[" + ", ".join(f"{x:.3g}" for x in h) + "]"


def _largest_remainder(p: Sequence[float], n: int) -> list[int]:
    raw = [x * n for x in p]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(p)), key=lambda i: raw[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    return counts


# ------------------------------------------------------------------------------------------ ramp
@dataclass(frozen=True)
class TokenRamp:
    """g(p, rank) = (p · stride + rank) mod V: the draft's rank-th token for position p under replay."""

    vocab: int
    length: int = DEFAULT_RAMP
    stride: int = _STRIDE

    def __post_init__(self) -> None:
        if not 2 <= self.length <= self.vocab - 2:
            raise ValueError(f"the ramp needs 2 <= R <= V - 2 (a miss token of rank R and R+1), got R={self.length}, "
                             f"V={self.vocab}")

    def token(self, position: int, rank: int) -> int:
        """g(position, rank)."""
        return (position * self.stride + rank) % self.vocab

    def first_other(self, position: int, ranks: Sequence[int], exclude: Optional[int]) -> int:
        """The first g(position, r) over ranks that is not `exclude`."""
        for r in ranks:
            t = self.token(position, r)
            if t != exclude:
                return t
        raise AssertionError("two distinct ranks cannot both equal one token")


def _force_argmax(logits: torch.Tensor, rows: Sequence[int], tokens: Sequence[int]) -> None:
    """Make tokens[i] the strict argmax of logits[rows[i]], in place on the logits' device."""
    if not rows:
        return
    dev = logits.device
    r = torch.tensor(rows, dtype=torch.int64, device=dev)
    t = torch.tensor(tokens, dtype=torch.int64, device=dev)
    top = logits.index_select(0, r).amax(dim=1)
    # strictly above the maximum (greedy breaks ties by the lowest id, so equal would not do)
    logits[r, t] = top + 1.0 + top.abs() * 1e-3


def _apply_ramp(logits: torch.Tensor, positions: Sequence[int], ramp: TokenRamp) -> None:
    """Row i's tokens g(positions[i], 0..R-1) become its top R, in that order, in place."""
    if not positions:
        return
    dev = logits.device
    pos = torch.tensor(positions, dtype=torch.int64, device=dev)
    ranks = torch.arange(ramp.length, dtype=torch.int64, device=dev)
    ids = (pos[:, None] * ramp.stride + ranks[None, :]) % ramp.vocab
    top = logits.amax(dim=1, keepdim=True)
    step = 1.0 + top.abs() * 1e-3  # well above float32 resolution at the row's scale
    vals = top + (ramp.length - ranks)[None, :].to(logits.dtype) * step
    logits.scatter_(1, ids, vals)


# ------------------------------------------------------------------------------------------ wrappers
class _Wrapper:
    """Forwards the adapter contract's plain members to the wrapped adapter (``inner``)."""

    #: every output produced through a replay wrapper is a replayed measurement
    replayed = True

    def __init__(self, adapter: Any) -> None:
        # not named `adapter`: the runtime unwraps objects that carry one (saguaro.runtime._adapter)
        self.inner = adapter
        self.vocab_size: int = int(adapter.vocab_size)
        self.max_context: int = int(adapter.max_context)
        self.eos_token_ids: list[int] = list(getattr(adapter, "eos_token_ids", []) or [])
        # the runtime gives a worker of a model on CUDA its own stream (saguaro.runtime._thread_init)
        self.device = getattr(adapter, "device", None)

    def truncate(self, seq_id: int, length: int) -> None:
        """As the wrapped adapter."""
        self.inner.truncate(seq_id, length)

    def length(self, seq_id: int) -> int:
        """As the wrapped adapter."""
        return self.inner.length(seq_id)

    def release(self, seq_id: int) -> None:
        """As the wrapped adapter."""
        self.inner.release(seq_id)

    def loaded(self, name: str) -> Any:
        """This wrapper as a ``saguaro.models.LoadedModel`` (what ``saguaro.Engine`` takes as a built model)."""
        from saguaro.models.loading import LoadedModel

        return LoadedModel(self, None, f"{name} (trace replay)", getattr(self.inner, "config", None))


class ReplayDraft(_Wrapper):
    """A draft adapter whose rank-r token at the position p a row predicts is ``ramp.token(p, r)``."""

    def __init__(self, adapter: Any, ramp: int = DEFAULT_RAMP) -> None:
        super().__init__(adapter)
        self.ramp = TokenRamp(self.vocab_size, ramp)

    def prefill(self, seq_ids: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run the prompts; each row predicts position len(prompt)."""
        out = self.inner.prefill(seq_ids, prompts)
        with torch.inference_mode():
            _apply_ramp(out, [len(p) for p in prompts], self.ramp)
        return out

    def extend(self, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
        """Run the tokens; the row of the token at position q predicts q + 1."""
        bases = [self.inner.length(s) for s in seq_ids]
        out = self.inner.extend(seq_ids, tokens)
        positions = [b + i + 1 for b, t in zip(bases, tokens) for i in range(len(t))]
        with torch.inference_mode():
            _apply_ramp(out, positions, self.ramp)
        return out

    def tree_step(self, seq_ids: list[int], visible: list[int], tokens: list[int], depth: int) -> torch.Tensor:
        """One branch step; row i's token sits at visible[i] + depth and predicts the next position."""
        out = self.inner.tree_step(seq_ids, visible, tokens, depth)
        with torch.inference_mode():
            _apply_ramp(out, [v + depth + 1 for v in visible], self.ramp)
        return out


@dataclass
class RoundRecord:
    """What ReplayTarget forced in one verification of one sequence."""

    seq: int
    index: int          # the sequence's round number (trace entry index, before wrapping)
    drafts: int         # n: drafts in the speculation
    trace_k: int        # the trace's accepted count
    accepted: int       # k realised: min(trace_k, n)
    hit: bool           # the trace's hit flag (what the bonus was chosen for)
    bonus: int
    position: int       # outcome position for the fan-out: k after a rejection, K when all n accepted
    clipped: bool = field(default=False)


class ReplayTarget(_Wrapper):
    """A target adapter that runs its real forwards and then makes greedy verification realise `trace`.

    ``draft``: the ReplayDraft of the pair (its ramp says which bonus tokens the tree forked on).
    ``log`` holds one RoundRecord per verification, in order. Extends of one token (no drafts: an
    autoregressive step, counted in ``plain_rounds``) and prefills are passed through untouched and
    consume no trace round.
    """

    def __init__(self, adapter: Any, trace: ReplayTrace, draft: ReplayDraft) -> None:
        super().__init__(adapter)
        if draft.vocab_size != self.vocab_size:
            raise ValueError(f"target vocabulary {self.vocab_size} != draft vocabulary {draft.vocab_size}")
        self.trace = trace
        self.ramp = draft.ramp
        self.log: list[RoundRecord] = []
        #: verifications of the pending token alone (no drafts: the last round of a request, a plain round)
        self.plain_rounds = 0
        self._rounds: dict[int, int] = {}

    def prefill(self, seq_ids: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run the prompts (untouched); each sequence's trace starts at round 0."""
        for s in seq_ids:
            self._rounds[s] = 0
        return self.inner.prefill(seq_ids, prompts)

    def extend(self, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
        """Verify [r, x1..xn] per sequence with the real forward, then force the trace's outcome."""
        bases = [self.inner.length(s) for s in seq_ids]
        out = self.inner.extend(seq_ids, tokens)
        rows: list[int] = []
        forced: list[int] = []
        offset = 0
        for s, base, t in zip(seq_ids, bases, tokens):
            n = len(t) - 1
            if n >= 1:
                rec = self._outcome(s, base, t)
                rows += [offset + i for i in range(rec.accepted + 1)]
                forced += list(t[1:rec.accepted + 1]) + [rec.bonus]
            else:
                self.plain_rounds += 1
            offset += len(t)
        with torch.inference_mode():
            _force_argmax(out, rows, forced)
        return out

    def tree_step(self, seq_ids: list[int], visible: list[int], tokens: list[int], depth: int) -> torch.Tensor:
        """As the wrapped adapter (a target has no tree; the contract still has the method)."""
        return self.inner.tree_step(seq_ids, visible, tokens, depth)

    def _outcome(self, seq: int, base: int, t: list[int]) -> RoundRecord:
        n = len(t) - 1
        index = self._rounds.get(seq, 0)
        self._rounds[seq] = index + 1
        trace_k, hit = self.trace.round(index)
        k = min(trace_k, n)
        p = base + k + 1  # the bonus token's position
        if k < n:  # rejected at k: the fork left out x_{k+1}, and the bonus must differ from it
            x = t[k + 1]
            ranks = (0, 1) if hit else (self.ramp.length, self.ramp.length + 1)
            bonus, position = self.ramp.first_other(p, ranks, x), k
        else:  # all n accepted: the fork's "all accepted" atom (F_K), no token left out
            bonus, position = self.ramp.token(p, 0 if hit else self.ramp.length), self.trace.k
        rec = RoundRecord(seq, index, n, trace_k, k, hit, bonus, position, clipped=trace_k > n)
        self.log.append(rec)
        return rec

    def summary(self, fanout: Optional[Sequence[int]] = None, lookups: Optional[int] = None) -> dict[str, Any]:
        """What was forced: rounds, accepted histogram, hits asked for, clipped rounds; with `fanout`
        (F_0..F_K) the hits the fork could not realise (F = 0 at the outcome's position); with
        `lookups` (the runtime's count) the hits expected among the first that many rounds."""
        recs = self.log
        hist = [0] * (self.trace.k + 1)
        for r in recs:
            hist[r.accepted] += 1
        out: dict[str, Any] = {"replayed": True, "trace_source": self.trace.source, "rounds": len(recs),
                               "accepted_histogram": hist, "hits_requested": sum(r.hit for r in recs),
                               "clipped": sum(r.clipped for r in recs), "plain_rounds": self.plain_rounds}
        looked = recs if lookups is None else _first_rounds(recs, lookups)
        if fanout is not None:
            out["impossible_hits"] = sum(1 for r in looked if r.hit and fanout[r.position] < 1)
        if lookups is not None:
            ok = [r for r in looked if fanout is None or fanout[r.position] >= 1]
            out["hits_expected"] = sum(r.hit for r in ok)
            out["lookups"] = lookups
        return out


def _first_rounds(recs: Sequence[RoundRecord], n: int) -> list[RoundRecord]:
    """The first n rounds of a one-sequence log (the rounds the runtime looked up: all but the last)."""
    by_seq: dict[int, list[RoundRecord]] = {}
    for r in recs:
        by_seq.setdefault(r.seq, []).append(r)
    if len(by_seq) != 1:
        raise ValueError("expected hits from a lookup count need a log of one sequence")
    return next(iter(by_seq.values()))[:n]


# ------------------------------------------------------------------------------------------ random weights
class RandomWeights(Mapping):
    """transformers-named weights of a config, drawn on demand (normal, std ``std``; norms near 1), in
    `dtype` on `device`: a lazy mapping for ``DecoderModel.from_state_dict``, already fused
    (qkv_proj, gate_up_proj) so that building a 32B model never holds a second copy of a matrix.
    Each tensor's values depend only on (seed, name)."""

    def __init__(self, config: Any, *, dtype: torch.dtype, device: Union[str, torch.device], seed: int = 0,
                 std: float = 0.02) -> None:
        self.dtype, self.device, self.seed, self.std = dtype, torch.device(device), seed, std
        c = config
        q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c.vocab_size, c.hidden_size),
                                              "model.norm.weight": (c.hidden_size,)}
        if not c.tie_word_embeddings:
            shapes["lm_head.weight"] = (c.vocab_size, c.hidden_size)
        for i in range(c.num_layers):
            p = f"model.layers.{i}."
            shapes[p + "self_attn.qkv_proj.weight"] = (q + 2 * kv, c.hidden_size)
            if c.attention_bias:
                shapes[p + "self_attn.qkv_proj.bias"] = (q + 2 * kv,)
            shapes[p + "self_attn.o_proj.weight"] = (c.hidden_size, q)
            if c.qk_norm:
                shapes[p + "self_attn.q_norm.weight"] = (c.head_dim,)
                shapes[p + "self_attn.k_norm.weight"] = (c.head_dim,)
            shapes[p + "mlp.gate_up_proj.weight"] = (2 * c.intermediate_size, c.hidden_size)
            shapes[p + "mlp.down_proj.weight"] = (c.hidden_size, c.intermediate_size)
            shapes[p + "input_layernorm.weight"] = (c.hidden_size,)
            shapes[p + "post_attention_layernorm.weight"] = (c.hidden_size,)
        self.shapes = shapes

    def __getitem__(self, name: str) -> torch.Tensor:
        shape = self.shapes[name]
        g = torch.Generator(device=self.device).manual_seed((self.seed << 32) ^ zlib.crc32(name.encode()))
        t = torch.empty(shape, dtype=self.dtype, device=self.device)
        if "norm" in name:
            return t.normal_(1.0, 0.1, generator=g)
        return t.normal_(0.0, self.std, generator=g)

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def __contains__(self, name: object) -> bool:
        return name in self.shapes

    def bytes_per_token(self) -> int:
        """Weight bytes one decode step reads: every matrix and vector, less the input embedding when a
        separate head exists (a lookup reads one row of it)."""
        size = torch.tensor([], dtype=self.dtype).element_size()
        total = 0
        for name, shape in self.shapes.items():
            if name == "model.embed_tokens.weight" and "lm_head.weight" in self.shapes:
                continue
            n = 1
            for d in shape:
                n *= d
            total += n * size
        return total


#: the published configs (config.json) of the models whose shapes the GPU check replays
REAL_SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(architecture="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64, tie_word_embeddings=True,
                         attention_bias=True),
    "qwen2.5-1.5b": dict(architecture="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                         num_layers=28, num_heads=12, num_kv_heads=2, head_dim=128, tie_word_embeddings=True,
                         attention_bias=True),
    "qwen2.5-7b": dict(architecture="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                       num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128, tie_word_embeddings=False,
                       attention_bias=True),
    "qwen3-0.6b": dict(architecture="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                       num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128, tie_word_embeddings=True,
                       qk_norm=True),
    "qwen3-32b": dict(architecture="qwen3", vocab_size=151936, hidden_size=5120, intermediate_size=25600,
                      num_layers=64, num_heads=64, num_kv_heads=8, head_dim=128, tie_word_embeddings=False,
                      qk_norm=True),
}


def real_shape(name: str, *, vocab_size: Optional[int] = None, max_position_embeddings: int = 32768) -> Any:
    """The ModelConfig of a REAL_SHAPES model (rope theta 1e6, no EOS ids: a replayed run never stops
    early). ``vocab_size`` overrides the width (Qwen2.5-7B's head is padded to 152064 rows while its
    0.5B draft has 151936; a pair must share one width, so the pair takes the target's)."""
    from saguaro.models.config import ModelConfig

    fields = dict(REAL_SHAPES[name], rope_theta=1e6, max_position_embeddings=max_position_embeddings)
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
    return ModelConfig(**fields)


def weight_bytes_per_token(config: Any, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of weights one decode step of `config` reads in `dtype` (RandomWeights.bytes_per_token;
    allocates nothing)."""
    return RandomWeights(config, dtype=dtype, device="cpu").bytes_per_token()


def random_decoder(config: Any, *, dtype: torch.dtype = torch.bfloat16, device: Union[str, torch.device] = "cpu",
                   seed: int = 0, std: float = 0.02) -> Any:
    """A native ``DecoderModel`` of `config`'s shapes with random weights (trace replay's models)."""
    from saguaro.models.decoder import DecoderModel

    return DecoderModel.from_state_dict(config, RandomWeights(config, dtype=dtype, device=device, seed=seed, std=std),
                                        dtype=dtype, device=device)


def check_realised(metrics: Mapping[str, Any], target: ReplayTarget,
                   fanout: Optional[Sequence[int]] = None) -> list[str]:
    """What the runtime measured that the replay did not force (empty: the trace was realised exactly).

    Compares the runtime's accepted histogram with the rounds ReplayTarget forced and, for ssd (one
    sequence), its cache hits with the hits asked for among the rounds it looked up.
    """
    problems = []
    s = target.summary()
    forced = list(s["accepted_histogram"])
    forced[0] += s["plain_rounds"]  # the runtime counts a verification without drafts as 0 accepted
    measured = list(metrics.get("accepted_histogram") or [])
    if measured[: len(forced)] != forced or any(measured[len(forced):]):
        problems.append(f"accepted histogram: measured {measured}, forced {forced}")
    looks = list(metrics.get("lookups_per_position") or [])
    if looks and sum(looks):
        hits = sum(metrics.get("hits_per_position") or [])
        s = target.summary(fanout=fanout, lookups=sum(looks))
        if hits != s["hits_expected"]:
            problems.append(f"cache hits: measured {hits} of {sum(looks)} lookups, forced {s['hits_expected']}")
    return problems


def record_dict(rec: RoundRecord) -> dict[str, Any]:
    """A RoundRecord as a plain dict (for JSON reports)."""
    return asdict(rec)
