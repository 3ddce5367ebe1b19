"""Meeting through a torch.distributed TCPStore at the draft-server's address.

The server writes what it serves under ``saguaro/server`` (protocol, wire version, vocabulary size,
context, model name) and its vocabulary table under ``saguaro/vocab``. A target takes a session
number from the ``saguaro/sessions`` counter, writes its hello (wire version, vocabulary, the address
it reached the server at) under ``s<N>/``, and waits for ``s<N>/welcome``: accepted, or refused with a
reason (busy, another wire version, another vocabulary). Both ends check the vocabulary; then both
build a two-rank gloo process group under the prefix ``s<N>/pg/`` (server rank 0, target rank 1).
"""
from __future__ import annotations

import datetime
import json
import zlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch.distributed as dist

from saguaro.models.vocab import first_difference

PROTOCOL = "saguaro-draft"
SERVER_KEY, VOCAB_KEY, SESSIONS_KEY = "saguaro/server", "saguaro/vocab", "saguaro/sessions"
SERVER_RANK, TARGET_RANK = 0, 1


def wire_version() -> int:
    """The frame format this build speaks (the C++ core's kWireVersion)."""
    from saguaro import _core

    return int(_core.WIRE_VERSION)


class DraftRefused(ConnectionError):
    """The draft-server (or this end) refused the pairing; the message says why and what to change."""


@dataclass
class ServerInfo:
    """What a draft-server announces."""

    wire_version: int
    vocab_size: int
    max_context: int
    model: str
    has_vocab_table: bool


def pack_vocab(table: Optional[Sequence[Optional[str]]]) -> bytes:
    return zlib.compress(json.dumps(list(table) if table is not None else None).encode())


def unpack_vocab(blob: bytes) -> Optional[list[Optional[str]]]:
    return json.loads(zlib.decompress(blob).decode())


def vocab_problem(target_size: int, target_table: Optional[Sequence[Optional[str]]], draft_size: int,
                  draft_table: Optional[Sequence[Optional[str]]]) -> Optional[str]:
    """Why the two cannot pair (sizes first, then the first differing token), or None."""
    if target_size != draft_size:
        return (f"the target's vocabulary has {target_size} entries but the draft's {draft_size}: the draft must "
                f"share the target's tokenizer")
    if target_table is not None and draft_table is not None:
        return first_difference(target_table, draft_table)
    return None


def gloo_group(store: Any, session: int, rank: int, my_address: str, timeout_s: float) -> Any:
    """The two-rank gloo process group of a session; this end's device listens on my_address."""
    opts = dist.ProcessGroupGloo._Options()
    opts._devices = [dist.ProcessGroupGloo.create_device(hostname=my_address)]
    opts._timeout = datetime.timedelta(seconds=timeout_s)
    return dist.ProcessGroupGloo(dist.PrefixStore(f"s{session}/pg/", store), rank, 2, opts)


# -- the server's side -----------------------------------------------------------------------------
def announce(store: Any, info: ServerInfo, table: Optional[Sequence[Optional[str]]]) -> None:
    store.set(VOCAB_KEY, pack_vocab(table))
    store.set(SERVER_KEY, json.dumps({"protocol": PROTOCOL, **info.__dict__}))
    store.add(SESSIONS_KEY, 0)


def sessions_opened(store: Any) -> int:
    return int(store.add(SESSIONS_KEY, 0))


def read_hello(store: Any, session: int, wait_s: float) -> dict:
    """The target's hello (with its vocabulary table under "table"); ValueError when it never comes or
    does not parse (a client that is not a saguaro target)."""
    try:
        store.wait([f"s{session}/hello"], datetime.timedelta(seconds=wait_s))
        hello = json.loads(store.get(f"s{session}/hello").decode())
        hello["table"] = unpack_vocab(store.get(f"s{session}/vocab")) if hello.get("has_vocab_table") else None
    except Exception as e:  # noqa: BLE001 - anything here is a client that did not speak the protocol
        raise ValueError(f"session {session}: no valid hello within {wait_s:g} s ({e})") from None
    if hello.get("protocol") != PROTOCOL:
        raise ValueError(f"session {session}: not a saguaro target (protocol {hello.get('protocol')!r})")
    return hello


def welcome(store: Any, session: int, refusal: Optional[str]) -> None:
    store.set(f"s{session}/welcome", json.dumps({"ok": refusal is None, "error": refusal}))


# -- the target's side -----------------------------------------------------------------------------
def read_server(store: Any, address: str, wait_s: float) -> tuple[ServerInfo, Optional[list]]:
    try:
        store.wait([SERVER_KEY], datetime.timedelta(seconds=wait_s))
        raw = json.loads(store.get(SERVER_KEY).decode())
    except Exception as e:  # noqa: BLE001
        raise DraftRefused(f"{address} did not answer as a saguaro draft-server within {wait_s:g} s ({e})") from None
    if raw.get("protocol") != PROTOCOL:
        raise DraftRefused(f"{address} is not a saguaro draft-server (protocol {raw.get('protocol')!r})")
    raw.pop("protocol")
    info = ServerInfo(**raw)
    table = unpack_vocab(store.get(VOCAB_KEY)) if info.has_vocab_table else None
    return info, table


def say_hello(store: Any, wire_version: int, vocab_size: int, table: Optional[Sequence[Optional[str]]],
              server_address: str, target_address: str) -> int:
    session = int(store.add(SESSIONS_KEY, 1))
    store.set(f"s{session}/vocab", pack_vocab(table))
    store.set(f"s{session}/hello", json.dumps({
        "protocol": PROTOCOL, "wire_version": wire_version, "vocab_size": vocab_size,
        "has_vocab_table": table is not None, "server_address": server_address, "target_address": target_address}))
    return session


def await_welcome(store: Any, session: int, address: str, wait_s: float) -> None:
    try:
        store.wait([f"s{session}/welcome"], datetime.timedelta(seconds=wait_s))
        answer = json.loads(store.get(f"s{session}/welcome").decode())
    except Exception as e:  # noqa: BLE001
        raise DraftRefused(f"the draft-server at {address} did not accept within {wait_s:g} s ({e})") from None
    if not answer.get("ok"):
        raise DraftRefused(f"the draft-server at {address} refused: {answer.get('error')}")
