"""TEST DOUBLES ONLY: a fake runtime, adapter and tokenizer with the contract's shapes (docs/contracts.md
§3, §4), so the API layer's logic can be tested without models. Never used outside tests."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional


class FakeTokenizer:
    """Ids 0..127 are single ASCII characters (0 is the end-of-sequence token, text ''); ids from 128
    on are the multi-character pieces in ``PIECES``."""

    PIECES = ["hello", " wor", "ld", "!\n", "<st", "op>", " the", " end", "\u00e9"]
    eos_token_ids = [0]

    def __init__(self, vocab: int = 160):
        self.vocab = vocab

    def piece(self, t: int) -> str:
        if t == 0:
            return ""
        if t < 128:
            return chr(t)
        return self.PIECES[(t - 128) % len(self.PIECES)]

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 128 for c in text]

    def decode(self, ids) -> str:
        return "".join(self.piece(int(t)) for t in ids)

    def apply_chat_template(self, messages, add_generation_prompt=True):
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class FakeAdapter:
    def __init__(self, vocab: int = 160, max_context: int = 256):
        self.vocab_size = vocab
        self.max_context = max_context
        self.eos_token_ids = [0]


@dataclass
class FakeLoaded:
    adapter: FakeAdapter
    tokenizer: FakeTokenizer
    name: str = "fake"
    config: object = None


def fake_model(vocab: int = 160, max_context: int = 256) -> FakeLoaded:
    return FakeLoaded(FakeAdapter(vocab, max_context), FakeTokenizer(vocab))


@dataclass
class FakeUpdate:
    new_tokens: list
    finished: bool = False
    finish_reason: Optional[str] = None
    error: Optional[str] = None
    metrics: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)


class FakeRuntime:
    """Produces ``script`` (cycled, shifted by the seed when temperature > 0) in rounds of
    ``round_size`` tokens; honours max_new_tokens, stop ids and cancel. Thread-safe."""

    script: list = [128, 129, 130, 131]
    round_size: int = 3
    instances: list = []

    def __init__(self, target, draft, config):
        self.target, self.draft, self.config = target, draft, config
        self.lock = threading.Lock()
        self.requests: dict = {}
        self.next_id = 100
        self.closed = False
        self.submitted = []
        self.callback = None
        FakeRuntime.instances.append(self)

    def set_update_callback(self, callback) -> None:
        self.callback = callback

    def submit(self, prompt_ids, params) -> int:
        with self.lock:
            if self.closed:
                raise RuntimeError("runtime closed")
            rid = self.next_id
            self.next_id += 1
            self.requests[rid] = dict(prompt=list(prompt_ids), params=params, out=[], done=False, reason=None)
            self.submitted.append((rid, list(prompt_ids), params))
            return rid

    def poll(self, rid, timeout=None) -> FakeUpdate:
        """Makes the next round's tokens now; like the real runtime, it notifies the update callback
        (here: at once, since the next round is always ready)."""
        update = self._round(rid)
        if not update.finished and self.callback is not None:
            self.callback([rid])
        return update

    def _round(self, rid) -> FakeUpdate:
        time.sleep(0.0005)  # let other threads interleave
        with self.lock:
            r = self.requests[rid]
            if r["done"]:
                return FakeUpdate([], True, r["reason"], metrics=self._m(r))
            p = r["params"]
            new = []
            for _ in range(self.round_size):
                i = len(r["out"])
                shift = (p.seed % 7) if p.temperature > 0 else 0
                tok = self.script[(i + shift) % len(self.script)]
                r["out"].append(tok)
                new.append(tok)
                # like the real runtime: the target adapter's EOS ids always stop a request
                if tok in p.stop_token_ids or tok in self.target.eos_token_ids:
                    r["done"], r["reason"] = True, "stop"
                    break
                if len(r["out"]) >= p.max_new_tokens:
                    r["done"], r["reason"] = True, "length"
                    break
            return FakeUpdate(new, r["done"], r["reason"], metrics=self._m(r) if r["done"] else {})

    def _m(self, r):
        return {"rounds": 1 + len(r["out"]) // self.round_size, "tokens_per_round": float(self.round_size),
                "cache_hit_rate": 0.5}

    def cancel(self, rid) -> None:
        with self.lock:
            r = self.requests[rid]
            if not r["done"]:
                r["done"], r["reason"] = True, "cancelled"

    def metrics(self) -> dict:
        with self.lock:
            return {"rounds": sum(len(r["out"]) for r in self.requests.values()), "cache_hit_rate": 0.5}

    def close(self) -> None:
        self.closed = True
