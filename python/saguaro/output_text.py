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
    request and are not part of the text (they stay in token_ids). Text is decoded incrementally over
    a short window of tokens (so a long output costs O(length), not O(length^2)), which equals
    decoding everything at once for byte-level and SentencePiece decoders.
    """

    decode: Decode
    stops: Sequence[str] = ()
    hidden_ids: frozenset = frozenset()
    token_ids: list[int] = field(default_factory=list)
    stopped: bool = False
    #: the text shown so far (the concatenated deltas)
    shown: str = ""
    _full: str = ""                 # text of the tokens decoded so far (up to _read)
    _ends: list = field(default_factory=list)   # len(_full) after each token
    _prefix: int = 0                # window start: decoding starts here so merges/spaces come out right
    _read: int = 0                  # tokens whose text is in _full
    _searched: int = 0
    _text: str = ""

    def _window_text(self, upto: int) -> str:
        return self.decode(self.token_ids[self._prefix:upto]) if upto > self._prefix else ""

    def _take(self, upto: int, final: bool) -> None:
        """Append the text that tokens [_read, upto) add, decoded in the window from _prefix (the
        window's first token decodes the same way in both calls, so the difference is exact)."""
        before = self._window_text(self._read)
        after = self._window_text(upto)
        if len(after) <= len(before) or (after.endswith(_REPLACEMENT) and not final):
            return  # no text yet (an empty token, or a character the next token completes)
        self._full += after[len(before):]
        self._prefix, self._read = self._read, upto

    def _advance(self, final: bool) -> None:
        n = len(self.token_ids)
        for i in range(len(self._ends), n):
            if i == n - 1 and self.token_ids[i] in self.hidden_ids:
                self._ends.append(len(self._full))
                continue
            self._take(i + 1, final=False)
            self._ends.append(len(self._full))
        if final:
            upto = n - 1 if n and self.token_ids[-1] in self.hidden_ids else n
            if self._read < upto:
                self._take(upto, final=True)

    def add(self, new_tokens: Sequence[int]) -> TextDelta:
        """Take newly committed tokens; return the text that is now final and the tokens kept."""
        if self.stopped or not new_tokens:
            return TextDelta("", [], self.stopped)
        before = len(self.token_ids)
        self.token_ids.extend(int(t) for t in new_tokens)
        self._advance(final=False)
        text = self._full
        if self.stops:
            maxlen = max(len(s) for s in self.stops)
            hit = find_stop(text, self.stops, max(0, self._searched - maxlen + 1))
            if hit is not None:
                # keep the tokens up to the one that completes the stop string; drop the rest of the round
                n = next(j + 1 for j, end in enumerate(self._ends) if end >= hit[1])
                kept = self.token_ids[before:n]
                del self.token_ids[max(n, before):]
                self.stopped = True
                return TextDelta(self._show(text[: hit[0]]), kept, True)
        self._searched = len(text)
        stable = len(text) - held_back(text, self.stops)
        return TextDelta(self._show(text[:stable]), list(new_tokens), False)

    def finish(self) -> TextDelta:
        """The request ended without a stop string: release the held-back text."""
        if self.stopped:
            return TextDelta("", [], True)
        self._advance(final=True)
        return TextDelta(self._show(self._full), [], False)

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
