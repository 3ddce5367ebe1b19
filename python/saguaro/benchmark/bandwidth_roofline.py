"""The memory-bandwidth roofline of a run on GGUF weights: how fast each row could go if reading its
weights were all it did, beside how fast it went.

A decode step of a model streams every weight it multiplies once: the bytes of the GGUF file's
tensors, less the token embedding where the head is a separate tensor (a lookup reads one row). The
machine's read bandwidth is measured in the same run, on the run's cores (``_core.memory_read_bandwidth``:
new threads reading a buffer far past the caches). Per committed token, in the ideal:

- AR streams the target once: ``T`` bytes a token;
- SD streams the target once and the draft K times per round: ``(T + K·D) / tokens_per_round``;
- SSD's draft runs on its own cores, hidden on a hit: ``T / tokens_per_round`` on the target's cores.

The roofline is the bandwidth (of the row's thread count) over those bytes; ``of roofline`` is the
measured decode rate over it: what the row's compute, overheads and misses cost beyond the stream.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

#: the buffer the bandwidth is read from: far past any last-level cache seen here (the Xeons: 480 MB)
BANDWIDTH_BUFFER_BYTES = 2 << 30


def weight_bytes_per_token(gguf_file: str | os.PathLike, vocab_keep: Optional[int] = None) -> int:
    """Bytes one decode step of the GGUF model streams: every tensor, less the token embedding when a
    separate ``output.weight`` is the head; with `vocab_keep` (a pruned draft vocabulary) the head
    counts only that share of its rows."""
    from saguaro.models.gguf_header import read_header

    tensors = {t.name: t for t in read_header(gguf_file).tensors}
    total = sum(int(t.n_bytes) for t in tensors.values())
    if "output.weight" in tensors:
        total -= int(tensors["token_embd.weight"].n_bytes) if "token_embd.weight" in tensors else 0
    head = tensors.get("output.weight", tensors.get("token_embd.weight"))
    if vocab_keep and head is not None:
        vocab = int(head.shape[-1])  # GGUF lists dimensions innermost first: [hidden, vocab]
        total -= int(head.n_bytes) - int(head.n_bytes) * min(int(vocab_keep), vocab) // vocab
    return total


def read_bandwidth(cores: Sequence[int], threads: int, reps: int = 3) -> float:
    """Bytes per second `threads` threads read on `cores` (this process's affinity is set to them for the
    measurement and restored)."""
    from saguaro import _core

    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, set(cores))
        return float(_core.memory_read_bandwidth(BANDWIDTH_BUFFER_BYTES, threads, reps))
    finally:
        os.sched_setaffinity(0, before)


def roofline(methods: Sequence[dict], summary: dict, target_bytes: int, draft_bytes: int,
             bandwidth: dict[int, float]) -> list[dict]:
    """One row per method: bytes per token, the roofline tokens/s at the bandwidth of its target's
    thread count, the measured decode tokens/s and their ratio (None where a figure is missing)."""
    rows = []
    for m in methods:
        s = summary.get(m["name"], {})
        tpr = s.get("tokens_per_round")
        if m["mode"] == "ar":
            per_token: Optional[float] = float(target_bytes)
        elif m["family"] != "saguaro" or not tpr:
            per_token = None  # the peer's rounds are not reported
        elif m["mode"] == "sd":
            per_token = (target_bytes + (m.get("k") or 0) * draft_bytes) / tpr
        else:
            per_token = target_bytes / tpr
        bw = bandwidth.get(int(m["target_threads"]))
        ceiling = bw / per_token if per_token and bw else None
        measured = s.get("decode_tps")
        rows.append({"method": m["name"], "bytes_per_token": per_token, "bandwidth": bw, "roofline_tps": ceiling,
                     "measured_tps": measured, "of_roofline": measured / ceiling if ceiling and measured else None})
    return rows


def measure(methods: Sequence[dict], summary: dict, target_gguf: Path, draft_gguf: Path,
            draft_vocab: Optional[int] = None) -> dict:
    """The roofline section of a results record: the weights' bytes, the bandwidth at each thread count
    the rows use (on their cores) and the per-method rows."""
    target_bytes = weight_bytes_per_token(target_gguf)
    draft_bytes = weight_bytes_per_token(draft_gguf, draft_vocab)
    cores = sorted({c for m in methods for c in m["target_cores"]})
    bandwidth = {t: read_bandwidth(cores[:t], t)
                 for t in sorted({int(m["target_threads"]) for m in methods})}
    return {"target_bytes": target_bytes, "draft_bytes": draft_bytes, "cores": cores,
            "buffer_bytes": BANDWIDTH_BUFFER_BYTES, "bandwidth": bandwidth,
            "rows": roofline(methods, summary, target_bytes, draft_bytes, bandwidth)}


def markdown_lines(section: dict[str, Any]) -> list[str]:
    """The results page's roofline section."""
    bw = ", ".join(f"{t} thread{'s' if int(t) > 1 else ''} {v / 1e9:.1f} GB/s"  # keys: str after JSON
                   for t, v in section["bandwidth"].items())
    lines = ["", "## Memory-bandwidth roofline (GGUF bytes per token over the machine's read bandwidth)", "",
             f"- weights streamed per decode step: target {section['target_bytes'] / 1e6:.0f} MB, draft "
             f"{section['draft_bytes'] / 1e6:.0f} MB (every tensor; the embedding only where no separate head exists; a "
             "pruned draft head only its kept rows)",
             f"- read bandwidth measured in this run on cores {section['cores']} "
             f"({section['buffer_bytes'] >> 20} MiB buffer, best of 3): {bw}",
             "- per committed token, ideally: AR the target's bytes; SD (target + K x draft) / tokens per round; "
             "SSD the target's bytes / tokens per round (its draft hidden on its own cores)", "",
             "| method | MB per token | roofline tok/s | measured decode tok/s | of roofline |", "|---|---|---|---|---|"]
    for r in section["rows"]:
        mb = f"{r['bytes_per_token'] / 1e6:.0f}" if r["bytes_per_token"] else "–"
        ceiling = f"{r['roofline_tps']:.2f}" if r["roofline_tps"] else "–"
        measured = f"{r['measured_tps']:.2f}" if r["measured_tps"] else "–"
        of = f"{r['of_roofline']:.0%}" if r["of_roofline"] else "–"
        lines.append(f"| {r['method']} | {mb} | {ceiling} | {measured} | {of} |")
    return lines
