"""How one request samples and when it stops (validated on construction)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from saguaro.runtime import RequestParams

_MASK64 = (1 << 64) - 1


def derive_seed(engine_seed: int, request_index: int) -> int:
    """A request's seed when it gives none: splitmix64 of (engine seed, request index).

    Mixing (rather than engine_seed + index) keeps neighbouring engines' request seeds apart.
    """
    z = (int(engine_seed) * 0x9E3779B97F4A7C15 + int(request_index) + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass
class SamplingParams:
    """Sampling and stopping for one request.

    temperature 0 is greedy decoding (the target's argmax, token for token); top_k 0 and top_p 1 are off.
    A request stops at max_new_tokens, at one of ``stop_token_ids``, at the model's end-of-sequence
    tokens (unless ``ignore_eos``) or when the generated text contains one of the ``stop`` strings
    (the text is cut before it). ``seed`` None derives one from the engine's seed and the request's
    index, so a run of an engine is reproducible; the same explicit seed gives the same tokens in any
    batch and with any timing.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop_token_ids: Sequence[int] = field(default_factory=list)
    stop: Union[str, Sequence[str], None] = field(default_factory=list)
    ignore_eos: bool = False
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if not _is_real(self.temperature) or math.isnan(self.temperature) or math.isinf(self.temperature):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        self.temperature = float(self.temperature)
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        self.top_k = int(self.top_k)
        if not _is_real(self.top_p) or math.isnan(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        self.top_p = float(self.top_p)
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        self.max_new_tokens = int(self.max_new_tokens)
        if isinstance(self.stop_token_ids, (str, bytes)) or not isinstance(self.stop_token_ids, Sequence):
            raise ValueError(f"stop_token_ids must be a list of token ids, got {self.stop_token_ids!r}")
        for t in self.stop_token_ids:
            if not _is_int(t) or t < 0:
                raise ValueError(f"stop_token_ids must hold token ids >= 0, got {t!r}")
        self.stop_token_ids = [int(t) for t in self.stop_token_ids]
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.stop, Sequence) or not all(isinstance(s, str) for s in self.stop):
            raise ValueError(f"stop must be a string or a list of strings, got {self.stop!r}")
        if any(s == "" for s in self.stop):
            raise ValueError("stop strings must not be empty (an empty stop string would match at once)")
        self.stop = list(self.stop)
        if not isinstance(self.ignore_eos, bool):
            raise ValueError(f"ignore_eos must be True or False, got {self.ignore_eos!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= _MASK64):
            raise ValueError(f"seed must be None or an integer in [0, 2**64), got {self.seed!r}")

    def request_params(self, *, eos_token_ids: Sequence[int], engine_seed: int, request_index: int) -> RequestParams:
        """The runtime's plain record: the model's EOS ids join the stop ids unless ignore_eos."""
        stops = list(self.stop_token_ids)
        if not self.ignore_eos:
            stops += [int(t) for t in eos_token_ids if int(t) not in stops]
        seed = self.seed if self.seed is not None else derive_seed(engine_seed, request_index)
        return RequestParams(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            stop_token_ids=stops,
            seed=int(seed),
            stream=0,
        )
