from hypothesis import given, settings, strategies as st

from saguaro.output_text import OutputText, find_stop, held_back

PIECES = {1: "ab", 2: "c", 3: "<", 4: "/s", 5: "><", 6: "x", 7: "\u00e9", 0: ""}


def decode(ids):
    return "".join(PIECES[i] for i in ids)


def test_find_stop_earliest_and_shortest():
    assert find_stop("xxENDyySTOP", ["STOP", "END"]) == (2, 5)
    assert find_stop("aEN", ["END"]) is None
    assert find_stop("abc", ["bc", "b"]) == (1, 2)
    assert find_stop("abcabc", ["abc"], start=1) == (3, 6)


def test_held_back_only_prefixes_of_stops():
    assert held_back("hello </", ["</s>"]) == 2
    assert held_back("hello <", ["</s>"]) == 1
    assert held_back("hello", ["</s>"]) == 0
    assert held_back("</s", ["</s>", "/sx"]) == 3


def test_stop_string_across_token_boundaries_cuts_text_and_tokens():
    out = OutputText(decode=decode, stops=["</s>"])
    d1 = out.add([1, 3])          # "ab<": "<" may start the stop string, held back
    assert d1.text == "ab" and not d1.stopped
    d2 = out.add([4, 5, 2, 2])    # "/s" + "><" completes "</s>" inside token 5; tokens after it dropped
    assert d2.stopped and d2.text == "" and d2.token_ids == [4, 5]
    assert out.text == "ab" and out.token_ids == [1, 3, 4, 5]


def test_false_alarm_is_released():
    out = OutputText(decode=decode, stops=["</s>"])
    assert out.add([3]).text == ""
    assert out.add([6]).text == "<x"
    assert out.finish().text == ""
    assert out.text == "<x"


def test_held_back_text_is_released_at_finish_and_eos_hidden():
    out = OutputText(decode=decode, stops=["</s>"], hidden_ids=frozenset({0}))
    assert out.add([1, 3]).text == "ab"
    d = out.add([0])
    assert d.text == ""
    assert out.finish().text == "<"
    assert out.text == "ab<" and out.token_ids == [1, 3, 0]


def test_incomplete_character_waits_for_next_token():
    # a byte-level decoder shows an unfinished UTF-8 sequence as U+FFFD
    def dec(ids):
        s = "".join(PIECES.get(i, "") for i in ids if i != 9)
        return s + ("\ufffd" if ids and ids[-1] == 9 else "")
    out = OutputText(decode=dec, stops=[])
    assert out.add([1, 9]).text == "ab"
    assert out.add([2]).text == "c"


def test_no_stops_streams_everything():
    out = OutputText(decode=decode)
    assert out.add([1, 2]).text == "abc"
    assert out.add([5]).text == "><"


BYTES = {0: b"", 1: b"ab", 2: b"c", 3: b"<", 4: b"/s", 5: b"><", 6: b"x", 7: "\u00e9".encode(),
         8: b"\xc3", 9: b"\xa9", 10: b" y"}


def decode_bytes(ids):
    """Like a byte-level BPE decoder (a split UTF-8 character shows as U+FFFD until completed) that,
    like SentencePiece, drops the leading space of the text."""
    text = b"".join(BYTES[i] for i in ids).decode("utf-8", errors="replace")
    return text[1:] if text.startswith(" ") else text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([[t] for t in BYTES] + [[8, 9]] * 4), max_size=10).map(lambda c: sum(c, [])),
       st.lists(st.integers(1, 4), min_size=1, max_size=12),
       st.lists(st.sampled_from(["</s>", "c<", "x", "abab", "\u00e9x", "y", "x y"]), max_size=2),
       st.booleans())
def test_streaming_equals_one_shot(tokens, cuts, stops, eos_at_end):
    """However the tokens arrive, the shown text is the full text cut at the first stop string."""
    if eos_at_end:
        tokens = tokens + [99]
    dec = lambda ids: decode_bytes([i for i in ids if i != 99]) + ("<eos>" if 99 in ids else "")
    text_ids = tokens[:-1] if eos_at_end else tokens
    full = decode_bytes(text_ids)
    hit = find_stop(full, stops)
    expect = full if hit is None else full[: hit[0]]
    out = OutputText(decode=dec, stops=stops, hidden_ids=frozenset({99}))
    shown, i, c = "", 0, 0
    while i < len(tokens) and not out.stopped:
        n = cuts[c % len(cuts)]
        c += 1
        shown += out.add(tokens[i:i + n]).text
        i += n
    shown += out.finish().text
    assert shown == expect == out.text
    if hit is not None:
        # the kept tokens are the shortest prefix whose text contains the stop string
        kept = out.token_ids
        assert find_stop(decode_bytes(kept), stops) is not None
        assert find_stop(decode_bytes(kept[:-1]), stops) is None
    else:
        assert out.token_ids == tokens
