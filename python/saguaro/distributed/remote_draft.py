"""RemoteDraft: the target's side of a draft that a ``saguaro draft-server`` serves.

It connects (rendezvous through the server's TCPStore, vocabulary checked both ways), holds the
``_core.TargetWire`` the runtime speaks to and the ``FrameLink`` that carries its frames. When the
link goes down (the draft died, hung or its link dropped) the wire tells the runtime, which finishes
every live request autoregressively (or fails them under ``strict``), one line is logged, and a
thread reconnects with backoff; once a draft-server answers at the address again the runtime re-sends
its sequences and speculates again.
"""
from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any, Optional, Sequence

import torch.distributed as dist

from saguaro.distributed import rendezvous
from saguaro.distributed.address import local_address_towards, parse_address
from saguaro.distributed.link import FrameLink

log = logging.getLogger("saguaro.remote_draft")

#: reconnect backoff: first wait, growth, longest wait (seconds)
_BACKOFF_FIRST_S, _BACKOFF_GROWTH, _BACKOFF_MAX_S = 0.25, 2.0, 5.0


class RemoteDraft:
    """A draft-server's draft for one target runtime.

    ``vocab_size``/``vocab_table``: the target's (the table may be None for a model without a
    tokenizer; sizes are still compared). ``heartbeat_s``/``peer_timeout_s``: how often each end
    speaks and how long silence means the peer is gone. ``reconnect``: keep trying after a failure.
    Raises ``rendezvous.DraftRefused`` (a ConnectionError) when the first connection fails.
    """

    def __init__(self, address: str, *, vocab_size: int, vocab_table: Optional[Sequence[Optional[str]]] = None,
                 connect_timeout_s: float = 10.0, heartbeat_s: float = 0.5, peer_timeout_s: float = 5.0,
                 reconnect: bool = True) -> None:
        from saguaro import _core

        self.address = address
        self.host, self.port = parse_address(address)
        self._vocab_size, self._table = int(vocab_size), vocab_table
        self.connect_timeout_s, self.heartbeat_s, self.peer_timeout_s = connect_timeout_s, heartbeat_s, peer_timeout_s
        self.reconnect = reconnect
        self.wire = _core.TargetWire()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._link: Optional[FrameLink] = None
        self._store: Any = None
        self._reconnector: Optional[threading.Thread] = None
        self._session = -1
        #: link failures and reconnects, newest last: (monotonic time, event, detail)
        self.events: list[tuple[float, str, str]] = []
        self.info = self._connect(connect_timeout_s)

    # -- connecting --------------------------------------------------------------------------------
    def _connect(self, timeout_s: float) -> rendezvous.ServerInfo:
        try:
            store = dist.TCPStore(self.host, self.port, is_master=False, wait_for_workers=False,
                                  timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as e:  # noqa: BLE001
            raise rendezvous.DraftRefused(f"no draft-server answers at {self.address} ({_first_line(e)}): start "
                                          f"one with `saguaro draft-server --draft MODEL --listen {self.address}`") from None
        info, table = rendezvous.read_server(store, self.address, timeout_s)
        if info.wire_version != rendezvous.wire_version():
            raise rendezvous.DraftRefused(f"the draft-server at {self.address} speaks wire version {info.wire_version}, "
                                          f"this build {rendezvous.wire_version()}: run the same saguaro version on both ends")
        problem = rendezvous.vocab_problem(self._vocab_size, self._table, info.vocab_size, table)
        if problem:
            raise rendezvous.DraftRefused(f"the draft served at {self.address} ({info.model}) cannot draft for this "
                                          f"target: {problem}")
        me = local_address_towards(self.host, self.port)
        session = rendezvous.say_hello(store, rendezvous.wire_version(), self._vocab_size, self._table, self.host,
                                       me)
        rendezvous.await_welcome(store, session, self.address, timeout_s)
        pg = rendezvous.gloo_group(store, session, rendezvous.TARGET_RANK, me, self.peer_timeout_s)
        link = FrameLink(pg, rendezvous.SERVER_RANK, self.wire, heartbeat_s=self.heartbeat_s,
                         peer_timeout_s=self.peer_timeout_s, peer_name="draft",
                         on_down=lambda why, s=session: self._on_down(s, why))
        with self._lock:
            self._store, self._link, self._session = store, link, session
        link.start()
        return info

    def _on_down(self, session: int, reason: str) -> None:
        with self._lock:
            if self._closed.is_set() or session != self._session:
                return  # an old link's late report, or our own close
        self.wire.fail(f"the draft at {self.address} is unreachable: {reason}")
        self.events.append((time.monotonic(), "down", reason))
        log.warning("saguaro: the draft at %s is unreachable (%s); live requests continue autoregressively%s",
                    self.address, reason, ", reconnecting" if self.reconnect else "")
        if self.reconnect:
            self._reconnector = threading.Thread(target=self._reconnect_loop, name="saguaro-draft-reconnect",
                                                 daemon=True)
            self._reconnector.start()

    def _reconnect_loop(self) -> None:
        # A new draft is attached only once the runtime has taken the failure (it then holds nothing
        # of the old draft): an idle runtime takes it with its next request.
        while not self.wire.failure_seen:
            if self._closed.wait(0.05):
                return
        wait = _BACKOFF_FIRST_S
        while not self._closed.wait(wait):
            try:
                self._connect(min(self.connect_timeout_s, 2.0))
            except Exception as e:  # noqa: BLE001 - not back yet (or refused): try again later
                self.events.append((time.monotonic(), "retry", _first_line(e)))
                wait = min(_BACKOFF_MAX_S, wait * _BACKOFF_GROWTH)
                continue
            if self._closed.is_set():
                return
            self.wire.reconnected()
            self.events.append((time.monotonic(), "reconnected", self.address))
            log.warning("saguaro: the draft at %s is back; speculating again", self.address)
            return

    # -- reporting and closing ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and link.up and not self.wire.down

    def stats(self) -> dict:
        """Where the draft runs and what the wire carried (bytes, frames, time in sends)."""
        link = self._link
        out = {"where": "draft-server", "address": self.address, "model": self.info.model,
               "connected": self.connected, "wire": self.wire.stats()}
        if link is not None:
            out["link"] = dict(link.stats)
        out["failures"] = sum(1 for e in self.events if e[1] == "down")
        out["reconnects"] = sum(1 for e in self.events if e[1] == "reconnected")
        return out

    def close(self, drain_s: float = 2.0) -> None:
        """Call after the runtime closed: sends its last frames (the draft frees the sequences) and says goodbye."""
        self._closed.set()
        link = self._link
        if link is not None:
            link.close(drain_s=drain_s)
        self.wire.close()
        if self._reconnector is not None:
            self._reconnector.join(timeout=drain_s + 3)



def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
