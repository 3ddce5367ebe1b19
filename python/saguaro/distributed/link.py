"""FrameLink: one wire end's frames over a two-rank gloo process group, with heartbeats.

Each frame is two gloo messages: an int64 header [kind, length] and the bytes. A thread sends what
the end produces (``next_frame``) and a heartbeat when there is nothing for ``heartbeat_s``; a
thread receives and hands frames to the end (``deliver``). A peer that says nothing (no frame, no
heartbeat) for ``peer_timeout_s``, a connection that drops or a frame that does not decode take the
link down: ``on_down(reason)`` is called once, and both threads stop. The process group is then
abandoned (never reused: a gloo operation that timed out leaves the pair in an unknown state).
"""
from __future__ import annotations

import datetime
import os
import random
import threading
import time
from typing import Any, Callable, Optional

import torch

_TAG_HEADER, _TAG_BODY = 17, 18
KIND_FRAME, KIND_HEARTBEAT, KIND_BYE = 1, 2, 3
#: a frame longer than this is a corrupt header, not a message
MAX_FRAME_BYTES = 1 << 31
#: tests only: "DELAY_MS,STALL_PROBABILITY,STALL_MS" holds every frame DELAY_MS before sending it and
#: stalls a frame with the given probability STALL_MS more (a TCP stream's retransmission timeout:
#: what packet loss does to it). For kernels without tc's netem qdisc.
IMPAIR_ENV = "SAGUARO_TEST_LINK_IMPAIR"


def _impairment() -> Optional[tuple[float, float, float]]:
    text = os.environ.get(IMPAIR_ENV)
    if not text:
        return None
    delay_ms, p, stall_ms = (float(x) for x in text.split(","))
    return delay_ms / 1e3, p, stall_ms / 1e3


class FrameLink:
    """Moves frames between ``end`` (a ``_core.TargetWire`` or ``_core.DraftHost``) and the peer."""

    def __init__(self, pg: Any, peer_rank: int, end: Any, *, on_down: Callable[[str], None],
                 heartbeat_s: float = 0.5, peer_timeout_s: float = 5.0, peer_name: str = "peer") -> None:
        if not heartbeat_s > 0 or not peer_timeout_s > heartbeat_s:
            raise ValueError(f"the heartbeat ({heartbeat_s} s) must be positive and shorter than the peer timeout "
                             f"({peer_timeout_s} s)")
        self._pg, self._peer, self._end = pg, peer_rank, end
        self._on_down = on_down
        self._heartbeat_s, self._timeout = heartbeat_s, datetime.timedelta(seconds=peer_timeout_s)
        self._peer_name = peer_name
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._down_lock = threading.Lock()
        self.down_reason: Optional[str] = None
        self.bye_received = threading.Event()
        self.stats = {"frames_sent": 0, "bytes_sent": 0, "frames_received": 0, "bytes_received": 0,
                      "send_wait_s": 0.0, "heartbeats_sent": 0}
        self._impair = _impairment()
        self._rng = random.Random(0)
        self._threads = [threading.Thread(target=self._send_loop, name=f"saguaro-link-send", daemon=True),
                         threading.Thread(target=self._recv_loop, name=f"saguaro-link-recv", daemon=True)]

    def start(self) -> "FrameLink":
        for t in self._threads:
            t.start()
        return self

    @property
    def up(self) -> bool:
        return self.down_reason is None and not self._stop.is_set()

    # -- sending -----------------------------------------------------------------------------------
    def _send(self, kind: int, body: Optional[bytes]) -> None:
        if self._impair is not None and body:
            delay, p, stall = self._impair
            time.sleep(delay + (stall if self._rng.random() < p else 0.0))
        t0 = time.perf_counter()
        header = torch.tensor([kind, len(body) if body else 0], dtype=torch.int64)
        self._pg.send([header], self._peer, _TAG_HEADER).wait(self._timeout)
        if body:
            self._pg.send([torch.frombuffer(bytearray(body), dtype=torch.uint8)], self._peer, _TAG_BODY).wait(self._timeout)
        self.stats["send_wait_s"] += time.perf_counter() - t0

    def _say_bye(self) -> None:
        # Best effort and bounded: a peer that is already gone cannot take it, and nothing depends on it.
        try:
            header = torch.tensor([KIND_BYE, 0], dtype=torch.int64)
            self._pg.send([header], self._peer, _TAG_HEADER).wait(datetime.timedelta(seconds=1))
        except Exception:  # noqa: BLE001
            pass

    def _send_loop(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._end.next_frame(0.05 if self._draining.is_set() else self._heartbeat_s)
                if frame is None:
                    if self._draining.is_set():
                        self._say_bye()
                        return
                    self._send(KIND_HEARTBEAT, None)
                    self.stats["heartbeats_sent"] += 1
                    continue
                self._send(KIND_FRAME, frame)
                self.stats["frames_sent"] += 1
                self.stats["bytes_sent"] += len(frame)
        except Exception as e:  # noqa: BLE001 - any failure of the transport takes the link down
            self._down(self._reason("sending to", e))

    # -- receiving ---------------------------------------------------------------------------------
    def _recv_loop(self) -> None:
        try:
            while not self._stop.is_set():
                header = torch.zeros(2, dtype=torch.int64)
                self._pg.recv([header], self._peer, _TAG_HEADER).wait(self._timeout)
                kind, n = int(header[0]), int(header[1])
                if self._stop.is_set():
                    return  # closed while waiting: what came is for nobody
                if kind == KIND_HEARTBEAT:
                    continue
                if kind == KIND_BYE:
                    self.bye_received.set()
                    self._down(f"the {self._peer_name} closed the link")
                    return
                if kind != KIND_FRAME or not 0 < n <= MAX_FRAME_BYTES:
                    raise ValueError(f"a malformed frame header from the {self._peer_name} (kind {kind}, {n} bytes)")
                body = torch.empty(n, dtype=torch.uint8)
                self._pg.recv([body], self._peer, _TAG_BODY).wait(self._timeout)
                self._end.deliver(body.numpy())
                self.stats["frames_received"] += 1
                self.stats["bytes_received"] += n
        except Exception as e:  # noqa: BLE001
            self._down(self._reason("receiving from", e))

    def _reason(self, doing: str, e: BaseException) -> str:
        # gloo reports a silent peer as a timed-out operation, or (for the other operation on the same
        # pair) as "timeout caused pair closure"; a send also waits for the peer to take it.
        text = _short(e)
        if "timed out" in text.lower() or "timeout" in text.lower():
            return (f"no message from the {self._peer_name} for {self._timeout.total_seconds():g} s (it stopped "
                    f"answering: hung, or its link is down)")
        return f"{doing} the {self._peer_name} failed: {text}"

    # -- ending ------------------------------------------------------------------------------------
    def _down(self, reason: str) -> None:
        with self._down_lock:
            if self.down_reason is not None or self._stop.is_set():
                return
            self.down_reason = reason
        self._stop.set()
        self._on_down(reason)

    def close(self, drain_s: float = 2.0) -> None:
        """Send what the end still holds (within drain_s), say goodbye, stop both threads (the
        receiving one returns at the peer's next heartbeat or goodbye, or at the peer timeout)."""
        self._draining.set()
        sender = self._threads[0]
        if sender.is_alive() and sender is not threading.current_thread():
            sender.join(timeout=drain_s + 1.0)
        with self._down_lock:
            self._stop.set()
        receiver = self._threads[1]
        if receiver.is_alive() and receiver is not threading.current_thread():
            receiver.join(timeout=self._heartbeat_s * 3)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout=max(0.0, deadline - time.monotonic()))


def _short(e: BaseException) -> str:
    """The first line of an exception's message, without gloo's source path prefix."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". This is typically caused", 1)[0]  # gloo's advice to check the remote's logs
