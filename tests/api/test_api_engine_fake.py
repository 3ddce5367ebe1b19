"""The engine's own logic over the test-double runtime (api_fakes.py); the same behaviours on a
real model are in test_api_engine_real.py."""
import threading

import pytest

import saguaro
from saguaro import SamplingParams, SpeculationConfig
from api_fakes import FakeRuntime, fake_model

# script tokens 128..131 decode to "hello", " wor", "ld", "!\n"
TEXT = "hello world!\n"


def run_in_threads(work, n: int) -> list[BaseException]:
    """work(i) on n threads at once; the exceptions they raised (to assert on in the test thread)."""
    errors: list[BaseException] = []

    def guarded(i):
        try:
            work(i)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_generate_string_returns_one_output(fake_engine_factory):
    with fake_engine_factory() as eng:
        [out] = eng.generate("hi", SamplingParams(max_new_tokens=4))
    assert out.text == TEXT and out.token_ids == [128, 129, 130, 131]
    assert out.finish_reason == "length" and out.prompt == "hi" and out.prompt_token_ids == [104, 105]
    assert out.metrics["generated_tokens"] == 4 and out.metrics["prompt_tokens"] == 2
    assert out.metrics["cache_hit_rate"] == 0.5  # the runtime's per-request figures are passed on


def test_prompt_forms(fake_engine_factory):
    with fake_engine_factory() as eng:
        sp = SamplingParams(max_new_tokens=2)
        outs = eng.generate(["ab", [5, 6, 7], [{"role": "user", "content": "q"}]], sp)
        assert [o.prompt_token_ids for o in outs[:2]] == [[97, 98], [5, 6, 7]]
        assert outs[2].prompt_token_ids == eng.tokenizer.encode("<user>q</user><assistant>")
        [o] = eng.generate([1, 2, 3], sp)
        assert o.prompt_token_ids == [1, 2, 3]
        [o] = eng.generate("q", sp, chat=True)
        assert o.prompt_token_ids == outs[2].prompt_token_ids
        [o] = eng.generate([[{"role": "user", "content": "q"}]], sp)
        assert o.prompt_token_ids == outs[2].prompt_token_ids


def test_per_prompt_sampling_params(fake_engine_factory):
    with fake_engine_factory() as eng:
        outs = eng.generate(["a", "b", "c"], [SamplingParams(max_new_tokens=n) for n in (1, 2, 3)])
        assert [len(o.token_ids) for o in outs] == [1, 2, 3]
        rt = FakeRuntime.instances[-1]
        assert [p.max_new_tokens for _, _, p in rt.submitted] == [1, 2, 3]
        with pytest.raises(ValueError, match="got 2 SamplingParams for 3 prompts"):
            eng.generate(["a", "b", "c"], [SamplingParams(), SamplingParams()])


def test_seeds_derived_from_engine_seed_and_index(fake_engine_factory):
    with fake_engine_factory(seed=5) as eng:
        eng.generate(["a", "b"], SamplingParams(max_new_tokens=1))
        eng.generate("c", SamplingParams(max_new_tokens=1, seed=42))
        seeds = [p.seed for _, _, p in FakeRuntime.instances[-1].submitted]
    from saguaro.sampling_params import derive_seed
    assert seeds == [derive_seed(5, 0), derive_seed(5, 1), 42]


def test_eos_added_to_stop_ids_unless_ignored(fake_engine_factory):
    with fake_engine_factory() as eng:
        eng.generate("a", SamplingParams(max_new_tokens=1))
        eng.generate("a", SamplingParams(max_new_tokens=1, ignore_eos=True, stop_token_ids=[9]))
        params = [p for _, _, p in FakeRuntime.instances[-1].submitted]
    assert list(params[0].stop_token_ids) == [0] and list(params[1].stop_token_ids) == [9]


def test_stop_token_finishes_with_stop_and_is_not_in_text(fake_engine_factory):
    with fake_engine_factory() as eng:
        [o] = eng.generate("a", SamplingParams(max_new_tokens=10, stop_token_ids=[130]))
    assert o.finish_reason == "stop" and o.token_ids == [128, 129, 130] and o.text == "hello wor"


def test_stop_string_across_tokens_cancels_and_truncates(fake_engine_factory, monkeypatch):
    # " wor" + "ld" contains "orl" across the token boundary
    with fake_engine_factory() as eng:
        [o] = eng.generate("a", SamplingParams(max_new_tokens=40, stop=["orl"]))
        assert o.finish_reason == "stop" and o.text == "hello w"
        assert o.token_ids == [128, 129, 130]  # up to the token completing the stop string
        rt = FakeRuntime.instances[-1]
        assert rt.requests[rt.submitted[-1][0]]["reason"] == "cancelled"


def test_stream_deltas_hold_back_possible_stop_prefix(fake_engine_factory, monkeypatch):
    monkeypatch.setattr(FakeRuntime, "round_size", 1)
    with fake_engine_factory() as eng:
        deltas = list(eng.stream("a", SamplingParams(max_new_tokens=40, stop=["world?", "ld!"])))
    texts = [d.text for d in deltas]
    # " wor" might begin "world?" -> held back; "ld" might begin "ld!" -> held back; "!\n" completes "ld!"
    assert "".join(texts) == "hello wor"
    assert deltas[-1].finished and deltas[-1].finish_reason == "stop"
    assert deltas[-1].metrics["generated_tokens"] == 4
    assert all(d.text == d.text for d in deltas)
    assert texts[0] == "hello"


def test_stream_equals_generate(fake_engine_factory):
    with fake_engine_factory() as eng:
        sp = SamplingParams(max_new_tokens=9, stop=["d!"])
        [o] = eng.generate("a", sp)
        s = eng.stream("a", sp)
        text = "".join(d.text for d in s)
        assert text == o.text and s.output.token_ids == o.token_ids
        assert sum((d.token_ids for d in eng.stream("a", sp)), []) == o.token_ids


def test_stream_closed_early_cancels(fake_engine_factory):
    with fake_engine_factory() as eng:
        s = eng.stream("a", SamplingParams(max_new_tokens=100))
        next(s)
        s.close()
        rt = FakeRuntime.instances[-1]
        assert rt.requests[rt.submitted[-1][0]]["reason"] == "cancelled"
        assert list(s) == []


def test_metrics_aggregate(fake_engine_factory):
    with fake_engine_factory() as eng:
        eng.generate(["a", "b"], SamplingParams(max_new_tokens=3))
        m = eng.metrics()
    assert m["requests_finished"] == 2 and m["tokens_generated"] == 6 and m["cache_hit_rate"] == 0.5
    assert m["mode"] == "ssd"


def test_concurrent_generate_from_four_threads(fake_engine_factory):
    results = {}
    with fake_engine_factory() as eng:
        def work(i):
            results[i] = eng.generate([f"t{i}-{j}" for j in range(5)],
                                      [SamplingParams(max_new_tokens=1 + (i + j) % 6) for j in range(5)])
        assert not run_in_threads(work, 4)
        for i, outs in results.items():
            for j, o in enumerate(outs):
                assert o.prompt == f"t{i}-{j}"
                assert len(o.token_ids) == 1 + (i + j) % 6
        assert eng.metrics()["requests_finished"] == 20
        assert len({o.request_id for outs in results.values() for o in outs}) == 20


def test_close_twice_and_use_after_close(fake_engine_factory):
    eng = fake_engine_factory()
    rt = FakeRuntime.instances[-1]
    eng.close()
    eng.close()
    assert rt.closed and eng.closed
    for call in (lambda: eng.generate("a"), lambda: eng.stream("a"), eng.metrics):
        with pytest.raises(RuntimeError, match="this Engine is closed"):
            call()
    with fake_engine_factory() as eng2:  # reopen
        assert eng2.generate("a", SamplingParams(max_new_tokens=1))[0].token_ids == [128]


# ---- every bad input names what to fix ----------------------------------------------------------

@pytest.mark.parametrize("prompt, msg", [
    ("", "prompt 0 is empty"),
    ([], "no prompts given"),
    ([[]], "prompt 0 is empty"),
    (["ok", ""], "prompt 1 is empty"),
    ([[{"role": "user", "content": ""}]], "prompt 0 is empty"),
    ([[{"role": "user"}]], "chat message 0 must be a dict with string 'role' and 'content'"),
    ([[1, 2, 999]], r"token ids outside the vocabulary \[0, 160\)"),
    (3.5, "prompts must be a string"),
    ([3.5], "prompt 0 must be a string"),
])
def test_bad_prompts(fake_engine_factory, prompt, msg):
    with fake_engine_factory() as eng:
        with pytest.raises(ValueError, match=msg):
            eng.generate(prompt)


def test_prompt_longer_than_context_names_both_lengths(fake_engine_factory):
    with fake_engine_factory(target=fake_model(max_context=64), draft=fake_model(max_context=64), k=4) as eng:
        with pytest.raises(ValueError, match="prompt 0 has 70 tokens but the model's context holds 64"):
            eng.generate("x" * 70)
        with pytest.raises(ValueError, match="has 50 tokens and max_new_tokens is 20.*at most 9"):
            eng.generate("x" * 50, SamplingParams(max_new_tokens=20))
        assert FakeRuntime.instances[-1].submitted == []  # checked before submitting
        eng.generate("x" * 50, SamplingParams(max_new_tokens=9))


def test_draft_context_counts(fake_engine_factory):
    with fake_engine_factory(draft=fake_model(max_context=40)) as eng:
        assert eng.max_context == 40


@pytest.mark.parametrize("kw, msg", [
    (dict(mode="fast"), 'unknown mode "fast"'),
    (dict(k=0), r"k \(draft tokens per round\) must be an integer in 1..64, got 0"),
    (dict(k=-2), r"k \(draft tokens per round\) must be an integer in 1..64, got -2"),
    (dict(saguaro_c=1.5), r"saguaro_c must be in \[0, 1\]"),
    (dict(saguaro_c=-0.1), r"saguaro_c must be in \[0, 1\]"),
    (dict(fanout=0), "fanout budget M must be an integer >= 1"),
    (dict(k=4, fanout=[1, 2]), r"fanout must be k\+1 = 5 integers >= 0"),
    (dict(k=4, fanout=[0, 0, 0, 0, 0]), r"fanout must be k\+1 = 5 integers >= 0"),
    (dict(fanout="triangle"), "fanout must be a budget"),
    (dict(backup="slow"), 'backup must be "jit"'),
    (dict(cache_policy="always"), 'cache_policy must be "wait", "partial" or "miss", got "always"'),
    (dict(target_threads=0), "target_threads must be an integer >= 1"),
    (dict(draft_cores=[999]), "draft_cores must list CPU cores this process may use"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*64\)"),
    (dict(dtype="bf16"), "dtype must be a torch dtype"),
    (dict(speculation={"k": 2}), "speculation must be a saguaro.SpeculationConfig"),
    (dict(draft=None), "mode 'ssd' needs a draft model"),
    (dict(draft=None, mode="sd"), "mode 'sd' needs a draft model"),
    (dict(draft_int8="int4"), "draft_int8 must be 'weight'"),
    (dict(draft_int8="dynamic"), "draft_int8='dynamic' applies when the engine loads the draft itself"),
])
def test_bad_engine_arguments(fake_engine_factory, kw, msg):
    with pytest.raises(ValueError, match=msg):
        fake_engine_factory(**kw)


def test_vocabulary_mismatch(fake_engine_factory):
    with pytest.raises(ValueError, match="target's vocabulary has 160 entries but the draft's 150"):
        fake_engine_factory(draft=fake_model(vocab=150))


def test_speculation_config_and_overrides(fake_engine_factory):
    with fake_engine_factory(speculation=SpeculationConfig(k=2, saguaro_c=0.5), k=3, fanout=[1, 1, 1, 2]) as eng:
        cfg = FakeRuntime.instances[-1].config
        assert (cfg.k, cfg.saguaro_c, cfg.fanout_kind, cfg.fanout) == (3, 0.5, "manual", [1, 1, 1, 2])
        assert eng.mode == "ssd"
    with fake_engine_factory(mode="ar", draft=None) as eng:
        rt = FakeRuntime.instances[-1]
        assert rt.draft is None and eng.draft is None and rt.config.mode == "ar"
    defaults = SpeculationConfig()
    with fake_engine_factory() as eng:
        cfg = FakeRuntime.instances[-1].config
        assert (cfg.k, cfg.fanout_budget, cfg.saguaro_c, cfg.backup) == (
            defaults.k, defaults.fanout_budget, defaults.saguaro_c, defaults.backup)


def test_runtime_error_is_raised(fake_engine_factory, monkeypatch):
    from api_fakes import FakeUpdate
    with fake_engine_factory() as eng:
        monkeypatch.setattr(FakeRuntime, "poll", lambda self, rid, timeout=None: FakeUpdate(
            [], True, "error", "NaN in the target's logits"))
        with pytest.raises(RuntimeError, match="request 0 failed in the runtime: NaN in the target's logits"):
            eng.generate("a")


def test_progress_bar(fake_engine_factory, capsys):
    with fake_engine_factory() as eng:
        eng.generate(["a", "b"], SamplingParams(max_new_tokens=2), progress=True)
    assert "2/2" in capsys.readouterr().err


def test_runtime_notes_become_warnings(fake_engine_factory, monkeypatch):
    from api_fakes import FakeUpdate
    with fake_engine_factory() as eng:
        monkeypatch.setattr(FakeRuntime, "poll", lambda self, rid, timeout=None: FakeUpdate(
            [128], True, "length", messages=["draft worker failed: boom; continuing autoregressively"]))
        with pytest.warns(RuntimeWarning, match="draft worker failed: boom"):
            [o] = eng.generate("a")
        assert o.token_ids == [128]


def test_interrupted_generate_cancels_its_requests(fake_engine_factory, monkeypatch):
    with fake_engine_factory() as eng:
        rt = FakeRuntime.instances[-1]
        real_poll = FakeRuntime.poll
        calls = []

        def poll(self, rid, timeout=None):
            calls.append(rid)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real_poll(self, rid, timeout)
        monkeypatch.setattr(FakeRuntime, "poll", poll)
        with pytest.raises(KeyboardInterrupt):
            eng.generate(["a", "b"], SamplingParams(max_new_tokens=50))
        assert {r["reason"] for r in rt.requests.values()} == {"cancelled"}


def test_token_ids_as_tensor(fake_engine_factory):
    import torch
    with fake_engine_factory() as eng:
        [o] = eng.generate(torch.tensor([5, 6]), SamplingParams(max_new_tokens=1))
        assert o.prompt_token_ids == [5, 6]
        outs = eng.generate([torch.tensor([5]), torch.tensor([7, 8])], SamplingParams(max_new_tokens=1))
        assert [x.prompt_token_ids for x in outs] == [[5], [7, 8]]


def test_stream_takes_one_prompt(fake_engine_factory):
    with fake_engine_factory() as eng:
        with pytest.raises(ValueError, match="stream\\(\\) takes one prompt, got 2"):
            eng.stream(["a", "b"])
        with pytest.raises(ValueError, match="prompt 0 is empty"):
            eng.stream("")


def test_same_instance_as_target_and_draft(fake_engine_factory):
    m = fake_model()
    with pytest.raises(ValueError, match="the target and the draft are the same model instance"):
        fake_engine_factory(target=m, draft=m)


def test_model_without_tokenizer_takes_token_ids_only(fake_engine_factory):
    t, d = fake_model(), fake_model()
    t.tokenizer = d.tokenizer = None
    with fake_engine_factory(target=t, draft=d) as eng:
        [o] = eng.generate([1, 2], SamplingParams(max_new_tokens=2))
        assert o.token_ids == [128, 129] and o.text == ""
        with pytest.raises(ValueError, match="loaded without a tokenizer, so prompts must be lists of token ids"):
            eng.generate("text")
        with pytest.raises(ValueError, match="stop strings need a tokenizer"):
            eng.generate([1], SamplingParams(stop=["x"]))


def test_ignore_eos_is_per_request_and_runtime_sees_no_eos(fake_engine_factory, monkeypatch):
    monkeypatch.setattr(FakeRuntime, "script", [128, 0, 129])  # 0 is the fake model's EOS
    with fake_engine_factory() as eng:
        rt = FakeRuntime.instances[-1]
        assert list(rt.target.eos_token_ids) == [] and rt.target.vocab_size == 160
        a, b = eng.generate(["a", "b"], [SamplingParams(max_new_tokens=5),
                                         SamplingParams(max_new_tokens=5, ignore_eos=True)])
    assert (a.token_ids, a.text, a.finish_reason) == ([128, 0], "hello", "stop")
    assert (b.token_ids, b.text, b.finish_reason) == ([128, 0, 129, 128, 0], "hello worhello", "length")


def test_concurrent_streams_from_four_threads(fake_engine_factory, monkeypatch):
    monkeypatch.setattr(FakeRuntime, "round_size", 1)
    texts = {}
    with fake_engine_factory() as eng:
        def work(i):
            sp = SamplingParams(max_new_tokens=3 + i, stop=["ld!"] if i % 2 else [])
            texts[i] = "".join(d.text for d in eng.stream(f"p{i}", sp))
        errors = run_in_threads(work, 4)
    assert not errors
    # 3..6 tokens of "hello"," wor","ld","!\n","hello",...; odd threads stop at "ld!"
    assert texts == {0: "hello world", 1: "hello wor", 2: "hello world!\nhello", 3: "hello wor"}


def test_default_speculation_shape_is_the_planned_one_for_the_device(fake_engine_factory):
    from saguaro.planned_defaults import PLANS, planned_shape

    assert planned_shape("cpu") == PLANS[("cpu", "bf16")] == (SpeculationConfig().k, SpeculationConfig().fanout_budget)
    assert planned_shape("cpu", "dynamic") == PLANS[("cpu", "int8")] != planned_shape("cpu")
    assert planned_shape("cuda:1") == planned_shape("cuda", "weight") == PLANS[("cuda", "bf16")]
    assert planned_shape("cpu", quantized=True) == PLANS[("cpu", "quantized")] != planned_shape("cpu")
    assert planned_shape("cpu", "weight", quantized=True) == PLANS[("cpu", "int8")]  # an int8 draft is not on blocks
    with fake_engine_factory():
        cfg = FakeRuntime.instances[-1].config
        assert (cfg.k, cfg.fanout_budget) == PLANS[("cpu", "bf16")]
    # a config the caller gives is used as given
    with fake_engine_factory(speculation=SpeculationConfig(k=3, fanout_budget=9)):
        cfg = FakeRuntime.instances[-1].config
        assert (cfg.k, cfg.fanout_budget) == (3, 9)


@pytest.mark.parametrize("cores,mode,expected", [
    (2, "ar", (2, 2)), (2, "sd", (2, 2)), (2, "ssd", (1, 1)),
    (1, "ssd", (1, 1)), (5, "ssd", (3, 2)), (16, "sd", (16, 16)),
])
def test_planned_threads_use_every_core(cores, mode, expected):
    from saguaro.planned_defaults import planned_threads

    assert planned_threads(mode, "cpu", cores=cores) == expected
    assert planned_threads(mode, "cuda:0", cores=cores) == (1, 1)


def test_engine_threads_default_to_the_plan_and_keep_the_callers(fake_engine_factory):
    from saguaro.planned_defaults import planned_threads

    for mode in ("ar", "sd", "ssd"):
        with fake_engine_factory(mode=mode) as eng:
            assert (eng.config.target_threads, eng.config.draft_threads) == planned_threads(mode, "cpu")
            assert FakeRuntime.instances[-1].config.target_threads == eng.config.target_threads
    with fake_engine_factory(mode="ar", target_threads=1) as eng:
        assert eng.config.target_threads == 1
    with fake_engine_factory(mode="sd", speculation=SpeculationConfig(draft_threads=3)) as eng:
        assert (eng.config.target_threads, eng.config.draft_threads) == (planned_threads("sd", "cpu")[0], 3)
