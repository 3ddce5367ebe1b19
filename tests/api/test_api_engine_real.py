"""The engine on the real runtime and a real model (SmolLM2-135M, float32 so greedy outputs are
exact): SSD/SD give the target's greedy tokens, streams, stop strings, chat, EOS, seeds, threads."""
import threading

import pytest
import torch

import saguaro
import saguaro.models
from saguaro import SamplingParams

PROMPT = "def fibonacci(n):"
N = 12


@pytest.fixture(scope="module")
def models():
    """Two separate instances (target and draft keep their own KV caches)."""
    return [saguaro.models.load("smollm2-135m", dtype=torch.float32) for _ in range(2)]


@pytest.fixture(scope="module")
def engine(models):
    with saguaro.Engine(models[0], models[1], mode="ssd", k=3, seed=7) as eng:
        yield eng


def reference_greedy(model, prompt_ids, n):
    """Greedy decoding straight on the adapter, without the runtime."""
    a = model.adapter
    logits = a.prefill([900], [list(prompt_ids)])
    out = []
    try:
        for _ in range(n):
            t = int(torch.argmax(logits[-1]))
            out.append(t)
            if t in a.eos_token_ids:
                break
            logits = a.extend([900], [[t]])
    finally:
        a.release(900)
    return out


@pytest.fixture(scope="module")
def greedy(models):
    ids = models[0].tokenizer.encode(PROMPT)
    return reference_greedy(models[0], ids, N)


def test_ssd_greedy_is_the_targets_greedy_output(engine, greedy):
    [o] = engine.generate(PROMPT, SamplingParams(max_new_tokens=N))
    assert o.token_ids == greedy
    assert o.text == engine.tokenizer.decode(greedy)
    assert o.finish_reason == "length" and o.metrics["generated_tokens"] == N
    assert o.metrics["rounds"] >= 1 and o.metrics["tokens_per_round"] > 1  # identical draft: all accepted


@pytest.mark.parametrize("mode", ["ar", "sd"])
def test_other_modes_same_tokens(models, greedy, mode):
    draft = models[1] if mode != "ar" else None
    with saguaro.Engine(models[0], draft, mode=mode, k=2) as eng:
        [o] = eng.generate(PROMPT, SamplingParams(max_new_tokens=N))
        assert eng.metrics()["mode"] == mode
    assert o.token_ids == greedy


def test_stream_equals_generate(engine, greedy):
    s = engine.stream(PROMPT, SamplingParams(max_new_tokens=N))
    deltas = list(s)
    assert "".join(d.text for d in deltas) == engine.tokenizer.decode(greedy)
    assert sum((d.token_ids for d in deltas), []) == greedy
    assert deltas[-1].finished and deltas[-1].finish_reason == "length"
    assert s.output.token_ids == greedy


def test_stop_string_across_token_boundary(engine, greedy):
    tok = engine.tokenizer
    full = tok.decode(greedy)
    # a stop string that starts inside one token and ends inside a later one
    pieces = [tok.decode(greedy[:i]) for i in range(len(greedy) + 1)]
    i = next(i for i in range(2, len(greedy)) if len(pieces[i]) - len(pieces[i - 1]) >= 2)
    start = len(pieces[i - 1]) + 1            # one character into token i-1 (0-based: greedy[i-1])
    stop = full[start:len(pieces[i]) + 1]     # ... to one character into the next token
    assert len(stop) >= 2 and full.find(stop) == start
    sp = SamplingParams(max_new_tokens=N, stop=[stop])
    [o] = engine.generate(PROMPT, sp)
    assert o.finish_reason == "stop" and o.text == full[:start]
    assert o.token_ids == greedy[:i + 1]
    assert "".join(d.text for d in engine.stream(PROMPT, sp)) == full[:start]


def test_chat_prompt_uses_the_template_and_stops_at_eos(engine):
    tok = engine.tokenizer
    msgs = [{"role": "user", "content": "What is 2+2? Answer with a number only."}]
    [o] = engine.generate([msgs], SamplingParams(max_new_tokens=24))
    assert o.prompt_token_ids == tok.encode(tok.apply_chat_template(msgs, add_generation_prompt=True))
    [o2] = engine.generate("What is 2+2? Answer with a number only.", SamplingParams(max_new_tokens=24), chat=True)
    assert o2.token_ids == o.token_ids
    assert o.finish_reason == "stop" and o.token_ids[-1] in tok.eos_token_ids
    assert o.text == tok.decode(o.token_ids[:-1]) and "<|im_end|>" not in o.text
    # ignore_eos runs on past the EOS to max_new_tokens
    n = len(o.token_ids) + 2
    [o3] = engine.generate([msgs], SamplingParams(max_new_tokens=n, ignore_eos=True))
    assert o3.finish_reason == "length" and len(o3.token_ids) == n and o3.token_ids[: len(o.token_ids)] == o.token_ids


def test_sampling_reproducible_by_seed_and_per_prompt_params(models):
    """Same seed, same tokens: in one batch, alone, and in another engine in other batch slots.

    backup="jit": the fast (n-gram) backup that backup="auto" may pick for a batch proposes other
    tokens, which keeps the distribution exact but changes which tokens a seed gives.
    """
    sp = [SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=6, seed=s) for s in (1, 2, 1)]
    with saguaro.Engine(models[0], models[1], mode="ssd", k=3, backup="jit") as eng:
        a, b, c = eng.generate([PROMPT] * 3, sp)
        [alone] = eng.generate(PROMPT, sp[1])
    assert a.token_ids == c.token_ids != b.token_ids
    assert alone.token_ids == b.token_ids
    with saguaro.Engine(models[0], models[1], mode="ssd", k=3, backup="jit", seed=99) as other:
        d, e = other.generate([PROMPT, PROMPT], [sp[1], sp[0]])
        # no seed: derived from the engine seed and the request index, so a new engine repeats it
        f = other.generate([PROMPT] * 2, SamplingParams(temperature=0.9, max_new_tokens=6))
    assert (d.token_ids, e.token_ids) == (b.token_ids, a.token_ids)
    with saguaro.Engine(models[0], models[1], mode="ssd", k=3, backup="jit", seed=99) as again:
        again.generate([PROMPT, PROMPT], [sp[1], sp[0]])
        g = again.generate([PROMPT] * 2, SamplingParams(temperature=0.9, max_new_tokens=6))
    assert [o.token_ids for o in g] == [o.token_ids for o in f]


def test_four_threads_concurrently(engine, models):
    prompts = ["def add(a, b):", "import os\n", "class Stack:", "# sort a list\n"]
    expected = {p: reference_greedy(models[0], models[0].tokenizer.encode(p), 4) for p in prompts}
    got, errors = {}, []

    def work(p):
        try:
            got[p] = engine.generate(p, SamplingParams(max_new_tokens=4))[0].token_ids
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and got == expected


def test_prompt_longer_than_context(engine):
    n = engine.max_context
    with pytest.raises(ValueError, match=f"prompt 0 has {n} tokens but the model's context holds {n}"):
        engine.generate([[1] * n])


def test_metrics_aggregate(engine):
    engine.generate(PROMPT, SamplingParams(max_new_tokens=N))
    m = engine.metrics()
    assert m["requests_finished"] >= 1 and m["tokens_generated"] >= N
    assert m["mode"] == "ssd" and m["generated_tokens"] >= N and "round_s" in m
    assert m["tokens_per_round"] > 1 and 0 <= m["cache_hit_rate"] <= 1


def test_close_and_reopen(models, greedy):
    eng = saguaro.Engine(models[0], models[1], mode="ssd", k=2)
    eng.close()
    eng.close()
    with pytest.raises(RuntimeError, match="this Engine is closed"):
        eng.generate(PROMPT)
    with saguaro.Engine(models[0], models[1], mode="ssd", k=2) as again:
        assert again.generate(PROMPT, SamplingParams(max_new_tokens=N))[0].token_ids == greedy


def test_stream_closed_early_is_cancelled_in_the_runtime(engine, greedy):
    before = engine.metrics()["requests_finished"]
    s = engine.stream(PROMPT, SamplingParams(max_new_tokens=200))
    first = next(s)
    s.close()                                   # cancels and collects the runtime's final update
    assert first.token_ids == greedy[: len(first.token_ids)]
    with pytest.raises(ValueError):             # the runtime has forgotten the request
        engine._runtime.poll(s._req.runtime_id, 0.0)  # noqa: SLF001 - the runtime has forgotten it
    [o] = engine.generate(PROMPT, SamplingParams(max_new_tokens=N))
    assert o.token_ids == greedy and engine.metrics()["requests_finished"] >= before + 1
