"""What the engine hands back: finished requests, stream deltas and speed summaries."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

#: why a request ended: a stop token / EOS / stop string, max_new_tokens, or cancelled
FinishReason = str


@dataclass
class RequestOutput:
    """One finished request.

    ``token_ids`` are the generated tokens (a final stop/EOS token included; after a stop string,
    up to the token that completed it); ``text`` is their text without a final stop/EOS token and cut
    before a stop string. ``metrics`` holds the runtime's per-request figures (rounds, accepted
    tokens, cache hits, ...) and the engine's timings (seconds, tokens/s).
    """

    request_id: int
    prompt: Union[str, list[int], list[dict]]
    prompt_token_ids: list[int]
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamDelta:
    """What one step of a stream adds: new text (never taken back) and the new token ids.

    The last delta has ``finished`` set, the finish reason and the request's metrics.
    """

    text: str
    token_ids: list[int]
    finished: bool = False
    finish_reason: Optional[FinishReason] = None
    metrics: dict[str, Any] = field(default_factory=dict)


def derive_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add the summary figures that follow from the runtime's raw counters (when they are there):
    tokens_per_round (committed tokens per verification round), accepted_per_round (accepted draft
    tokens per round), acceptance_rate (accepted / proposed drafts) and cache_hit_rate."""
    m = dict(metrics)
    rounds, tokens = m.get("rounds"), m.get("generated_tokens")
    if "tokens_per_round" not in m and isinstance(rounds, (int, float)) and rounds and isinstance(tokens, (int, float)):
        m["tokens_per_round"] = tokens / rounds
    hist = m.get("accepted_histogram")
    if "accepted_per_round" not in m and isinstance(hist, (list, tuple)) and sum(hist):
        m["accepted_per_round"] = sum(k * n for k, n in enumerate(hist)) / sum(hist)
    proposed, accepted = m.get("proposed_per_position"), m.get("accepted_per_position")
    if "acceptance_rate" not in m and isinstance(proposed, (list, tuple)) and isinstance(accepted, (list, tuple)):
        if sum(proposed):
            m["acceptance_rate"] = sum(accepted) / sum(proposed)
    lookups, hits = m.get("lookups_per_position"), m.get("hits_per_position")
    if "cache_hit_rate" not in m and isinstance(lookups, (list, tuple)) and isinstance(hits, (list, tuple)):
        if sum(lookups):
            m["cache_hit_rate"] = sum(hits) / sum(lookups)
    return m


def _first(metrics: dict[str, Any], *names: str) -> Optional[float]:
    for n in names:
        v = metrics.get(n)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def speed_summary(metrics: dict[str, Any]) -> str:
    """One line: decode tokens/s, accepted tokens per round and the speculation-cache hit rate."""
    parts = []
    tps = _first(metrics, "tokens_per_s")
    tokens = _first(metrics, "generated_tokens")
    if tokens is not None:
        parts.append(f"{int(tokens)} tokens")
    if tps is not None:
        parts.append(f"{tps:.1f} tokens/s")
    tpr = _first(metrics, "tokens_per_round")
    if tpr is not None:
        parts.append(f"{tpr:.2f} tokens per round")
    apr = _first(metrics, "accepted_per_round")
    if apr is not None:
        parts.append(f"{apr:.2f} accepted drafts per round")
    hit = _first(metrics, "cache_hit_rate", "hit_rate")
    if hit is not None:
        parts.append(f"cache hit rate {100.0 * hit:.0f}%")
    else:
        parts.append("cache hit rate n/a")
    return ", ".join(parts)
