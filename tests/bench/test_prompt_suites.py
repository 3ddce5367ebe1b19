"""Prompt loading: HumanEval, MT-Bench, Spec-Bench and any JSONL file."""
from __future__ import annotations

import json

import pytest

from saguaro.benchmark import prompt_suites as P


def _write(tmp_path, rows, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in rows) + "\n")
    return path


def test_jsonl_field_detection(tmp_path):
    path = _write(tmp_path, [
        {"prompt": "def f(x):", "category": "code"},
        {"turns": ["first turn", "second"], "category": "writing", "question_id": 7},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        {"question": "why?"},
        "",
        {"prompt": "hello", "chat": True},
    ])
    ps = P.load_jsonl(path)
    assert [(p.text, p.chat) for p in ps] == [("def f(x):", False), ("first turn", True), ("hi", True),
                                               ("why?", True), ("hello", True)]
    assert ps[1].id == "p/7" and ps[1].category == "writing" and ps[2].system == "be brief"


def test_jsonl_per_category_and_limit(tmp_path):
    rows = [{"turns": [f"q{i}"], "category": "ab"[i % 2]} for i in range(10)]
    path = _write(tmp_path, rows)
    ps = P.load_jsonl(path, per_category=2)
    assert [p.text for p in ps] == ["q0", "q1", "q2", "q3"]
    assert len(P.load_jsonl(path, limit=3)) == 3


@pytest.mark.parametrize("line,match", [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"),
                                        ('{"answer": 3}', "no prompt text")])
def test_jsonl_errors_say_what_to_fix(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=match):
        P.load_jsonl(path)
    with pytest.raises(FileNotFoundError):
        P.load_jsonl(tmp_path / "missing.jsonl")


def test_standard_sets():
    he = P.human_eval(limit=8)
    assert [p.id for p in he] == [f"HumanEval/{i}" for i in range(8)] and not he[0].chat
    mt = P.mt_bench(per_category=1)
    assert len(mt) == 8 and len({p.category for p in mt}) == 8 and all(p.chat for p in mt)
    quick = P.suite_prompts("quick")
    assert len(quick) == 16
    with pytest.raises(ValueError, match="quick"):
        P.suite_prompts("huge")


def test_spec_bench_is_read_from_beside_the_repo():
    path = P.spec_bench_path()
    assert "shared" in str(path) and P.repo_root() not in path.parents
    ps = P.spec_bench(per_category=2)
    assert len(ps) == 26 and all(p.chat for p in ps)


def test_the_long_suite_is_the_longest_document_questions():
    ps = P.suite_prompts("long")
    assert [p.category for p in ps] == ["summarization", "rag"] * 2 and all(p.chat for p in ps)
    every = P.spec_bench(per_category=None)
    for c in P.LONG_CATEGORIES:
        chosen = [p for p in ps if p.category == c]
        rest = [p for p in every if p.category == c and p.id not in {q.id for q in chosen}]
        assert min(len(p.text) for p in chosen) >= max(len(p.text) for p in rest)
    assert [p.id for p in P.long_prompts(per_category=1)] == [ps[0].id, ps[1].id]


def test_interleave_covers_every_source():
    a = [P.Prompt(f"a{i}", "a", "c", "x", False) for i in range(3)]
    b = [P.Prompt(f"b{i}", "b", "c", "x", True) for i in range(1)]
    assert [p.id for p in P.interleave([a, b])] == ["a0", "b0", "a1", "a2"]
