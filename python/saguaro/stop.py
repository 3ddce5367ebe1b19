"""Stop strings on the detokenised output: a request's text as its tokens are committed.

The runtime only knows token ids; stop strings are found here, on the text, because a stop string
can span several tokens (and a token can hold more than a stop string). Text that could be the
beginning of a stop string is held back until the next tokens show whether it is one, so a stream
never shows text that must later be taken back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

Decode = Callable[[Sequence[int]], str]

#: what a decoder gives for an incomplete UTF-8 sequence at the end (the next token completes it)
_REPLACEMENT = "\ufffd"


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> Optional[tuple[int, int]]:
    """(start, end) of the earliest stop string occurrence in text that begins at index >= start.

    Ties (two stop strings at the same index) go to the shorter one: it completes first.
    """
    best: Optional[tuple[int, int]] = None
    for s in stops:
        i = text.find(s, start)
        if i >= 0 and (best is None or i < best[0] or (i == best[0] and i + len(s) < best[1])):
            best = (i, i + len(s))
    return best


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of text are a proper prefix of some stop string."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


@dataclass
class TextDelta:
    """What one batch of committed tokens adds to the output."""

    text: str
    token_ids: list[int]
    stopped: bool = False


@dataclass
class OutputText:
    """A request's generated tokens and text, with stop strings applied.

    ``decode`` turns token ids into text; ``hidden_ids`` are stop/end-of-sequence ids that end the
    request and are not part of the text (they stay in token_ids).
    """

    decode: Decode
    stops: Sequence[str] = ()
    hidden_ids: frozenset = frozenset()
    token_ids: list[int] = field(default_factory=list)
    stopped: bool = False
    #: the text shown so far (the concatenated deltas)
    shown: str = ""
    _text: str = ""
    _searched: int = 0

    def _decode(self, tokens: Sequence[int]) -> str:
        if tokens and tokens[-1] in self.hidden_ids:
            tokens = tokens[:-1]
        return self.decode(list(tokens)) if tokens else ""

    def add(self, new_tokens: Sequence[int]) -> TextDelta:
        """Take newly committed tokens; return the text that is now final and the tokens kept."""
        if self.stopped or not new_tokens:
            return TextDelta("", [], self.stopped)
        before = len(self.token_ids)
        self.token_ids.extend(int(t) for t in new_tokens)
        text = self._decode(self.token_ids)
        if self.stops:
            maxlen = max(len(s) for s in self.stops)
            hit = find_stop(text, self.stops, max(0, self._searched - maxlen + 1))
            if hit is not None:
                # keep the tokens up to the one that completes the stop string; drop the rest of the round
                n = before + 1
                while n < len(self.token_ids) and len(self._decode(self.token_ids[:n])) < hit[1]:
                    n += 1
                kept = self.token_ids[before:n]
                del self.token_ids[n:]
                self.stopped = True
                return TextDelta(self._show(text[: hit[0]]), kept, True)
        stable = len(text)
        while stable > 0 and text[stable - 1] == _REPLACEMENT:
            stable -= 1
        self._searched = stable
        stable -= held_back(text[:stable], self.stops)
        return TextDelta(self._show(text[:stable]), list(new_tokens), False)

    def finish(self) -> TextDelta:
        """The request ended without a stop string: release the held-back text."""
        if self.stopped:
            return TextDelta("", [], True)
        return TextDelta(self._show(self._decode(self.token_ids)), [], False)

    @property
    def text(self) -> str:
        """The output text so far (final once the request finished or stopped)."""
        return self._text

    def _show(self, text: str) -> str:
        self._text = text
        # A decoder may rewrite text it already gave (clean-up of spaces before punctuation);
        # the shown text cannot be taken back, so a stream continues from the shown length.
        delta = text[len(self.shown):]
        self.shown += delta
        return delta
