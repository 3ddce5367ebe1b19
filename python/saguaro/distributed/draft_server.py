"""DraftServer: one draft model served at tcp://HOST:PORT to one target at a time (``saguaro draft-server``).

It loads the model, announces it in its TCPStore, and waits; nothing is checked until a target says
hello. A target whose wire version or vocabulary differs is refused with the reason (both sizes and
the first differing token); a second target while one is served is refused as busy. A served target
gets a ``_core.DraftHost`` (the draft worker behind a wire) and a ``FrameLink``; when the target
stops, dies, hangs or its link drops, the host is closed (the draft frees that target's sequences)
and the server takes the next one. A client that is not a saguaro target is ignored.
"""
from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist

from saguaro.distributed import rendezvous
from saguaro.distributed.address import parse_address
from saguaro.distributed.link import FrameLink
from saguaro.models.vocab import vocab_table

log = logging.getLogger("saguaro.draft_server")

#: how often the server looks for new sessions (seconds)
_POLL_S = 0.05


class DraftServer:
    """Serve ``draft`` (anything ``saguaro.models.load`` takes, or a loaded model) at ``listen``.

    ``threads``/``cores``: the draft worker's torch threads and CPU cores. ``peer_timeout_s``: a target
    silent this long (no frame, no heartbeat) is gone. ``port`` is the bound port (``listen`` may say 0).
    """

    def __init__(self, draft: Any, listen: str = "tcp://127.0.0.1:7600", *, threads: Optional[int] = None,
                 cores: Optional[Sequence[int]] = None, device: str = "cpu", dtype: torch.dtype = torch.bfloat16,
                 quantized: Optional[bool] = None, int8: Any = False, heartbeat_s: float = 0.5,
                 peer_timeout_s: float = 5.0, hello_wait_s: float = 5.0) -> None:
        from saguaro.models import load

        self.host, port = parse_address(listen)
        self.model = draft if hasattr(draft, "adapter") else load(draft, dtype=dtype, device=device,
                                                                   quantized=quantized, int8=int8)
        self.threads = int(threads) if threads else max(1, torch.get_num_threads())
        self.cores = [int(c) for c in (cores or [])]
        self.heartbeat_s, self.peer_timeout_s, self.hello_wait_s = heartbeat_s, peer_timeout_s, hello_wait_s
        adapter = self.model.adapter
        table = vocab_table(self.model.tokenizer) if self.model.tokenizer is not None else None
        self._table = table
        self.store = dist.TCPStore(self.host, port, is_master=True, wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=30))
        self.port = int(self.store.port)
        self.address = f"tcp://{self.host}:{self.port}"
        self.info = rendezvous.ServerInfo(wire_version=rendezvous.wire_version(),
                                          vocab_size=int(adapter.vocab_size), max_context=int(adapter.max_context),
                                          model=str(self.model.name), has_vocab_table=table is not None)
        rendezvous.announce(self.store, self.info, table)
        self._stop = threading.Event()
        self._active: Optional[threading.Thread] = None
        self._seen = rendezvous.sessions_opened(self.store)
        #: targets served, refused, and how their sessions ended (for tests and the log)
        self.sessions: list[dict] = []

    # -- serving -----------------------------------------------------------------------------------
    def serve(self, max_sessions: Optional[int] = None, max_seconds: Optional[float] = None) -> None:
        """Accept targets until stop() (or until max_sessions were served / max_seconds passed)."""
        log.info("saguaro draft-server: %s (vocabulary %d, context %d) listening on %s", self.info.model,
                 self.info.vocab_size, self.info.max_context, self.address)
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if max_sessions is not None and sum(1 for s in self.sessions if s["accepted"]) >= max_sessions \
                    and not self.busy:
                break
            opened = rendezvous.sessions_opened(self.store)
            while self._seen < opened:
                self._seen += 1
                self._open(self._seen)
            self._stop.wait(_POLL_S)
        self._finish_active()

    @property
    def busy(self) -> bool:
        return self._active is not None and self._active.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def _open(self, session: int) -> None:
        try:
            hello = rendezvous.read_hello(self.store, session, self.hello_wait_s)
        except ValueError as e:
            log.warning("saguaro draft-server: ignored a client: %s", e)
            self.sessions.append({"session": session, "accepted": False, "reason": str(e)})
            return
        refusal = self._refusal(hello)
        if refusal is None and self.busy:
            refusal = "busy: it serves another target now (one target at a time); retry when that one is done"
        rendezvous.welcome(self.store, session, refusal)
        if refusal is not None:
            log.warning("saguaro draft-server: refused target %s: %s", hello.get("target_address"), refusal)
            self.sessions.append({"session": session, "accepted": False, "reason": refusal})
            return
        record = {"session": session, "accepted": True, "target": hello.get("target_address"), "ended": None}
        self.sessions.append(record)
        my_address = self.host if self.host not in ("0.0.0.0", "") else hello.get("server_address", self.host)
        self._active = threading.Thread(target=self._serve_target, args=(session, my_address, record),
                                        name=f"saguaro-draft-session-{session}", daemon=True)
        self._active.start()

    def _refusal(self, hello: dict) -> Optional[str]:
        if hello.get("wire_version") != self.info.wire_version:
            return (f"wire version {hello.get('wire_version')} is not this server's {self.info.wire_version}: "
                    f"run the same saguaro version on both ends")
        problem = rendezvous.vocab_problem(int(hello.get("vocab_size", -1)), hello.get("table"),
                                           self.info.vocab_size, self._table)
        return problem

    def _serve_target(self, session: int, my_address: str, record: dict) -> None:
        ended = threading.Event()
        reason = ["?"]

        def on_down(why: str) -> None:
            reason[0] = why
            ended.set()

        host = link = None
        try:
            pg = rendezvous.gloo_group(self.store, session, rendezvous.SERVER_RANK, my_address, self.peer_timeout_s)
            host = _make_host(self.model.adapter, self.cores, self.threads)
            link = FrameLink(pg, rendezvous.TARGET_RANK, host, on_down=on_down, heartbeat_s=self.heartbeat_s,
                             peer_timeout_s=self.peer_timeout_s, peer_name="target").start()
            log.info("saguaro draft-server: serving target %s (session %d)", record["target"], session)
            while not ended.wait(0.1):
                if self._stop.is_set():
                    reason[0] = "the draft-server is stopping"
                    break
        except Exception as e:  # noqa: BLE001 - a failed session must not stop the server
            reason[0] = f"session setup failed: {e}"
        finally:
            if host is not None:
                host.close()  # frees every sequence this target left in the draft
            if link is not None:
                link.close(drain_s=0.5)
            record["ended"] = reason[0]
            record["stats"] = host.stats() if host is not None else {}
            log.info("saguaro draft-server: target %s left (%s); its sequences are freed", record["target"], reason[0])

    def _finish_active(self) -> None:
        if self._active is not None:
            self._active.join(timeout=self.peer_timeout_s + 5)

    def close(self) -> None:
        """Stop serving and drop the store (the port is free again)."""
        self.stop()
        self._finish_active()
        self.store = None



def _make_host(adapter: Any, cores: list[int], threads: int) -> Any:
    from saguaro import _core
    from saguaro.kernels.threads import use_worker_threads

    def thread_init() -> None:
        use_worker_threads(adapter, threads)

    return _core.DraftHost(adapter, cores=cores, thread_init=thread_init)
