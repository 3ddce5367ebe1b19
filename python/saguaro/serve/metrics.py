"""Prometheus metrics of the server (all named ``saguaro_...``), on a registry of its own.

Per-request figures (tokens, drafts proposed and accepted by position, cache look-ups and hits,
backups) are added when a request finishes, from the same figures its response carries, so the
counters equal the sums over the responses. Runtime-wide figures (rounds, rows per round, the
fraction of draft time hidden behind the target) are read from the runtime at each scrape.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any, Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from saguaro.results import StreamDelta

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                    2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


def _total(metrics: dict[str, Any], name: str) -> int:
    v = metrics.get(name)
    if isinstance(v, (list, tuple)):
        return int(sum(v))
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def ssd_figures(metrics: dict[str, Any], mode: str) -> dict[str, Any]:
    """The per-request speculation figures a response carries in its ``saguaro`` field."""
    proposed = _total(metrics, "proposed_per_position")
    accepted = _total(metrics, "accepted_per_position")
    lookups = _total(metrics, "lookups_per_position")
    hits = _total(metrics, "hits_per_position")
    rounds = _total(metrics, "rounds")
    generated = _total(metrics, "generated_tokens")
    return {
        "mode": mode,
        "generated_tokens": generated,
        "rounds": rounds,
        "tokens_per_round": generated / rounds if rounds else None,
        "proposed_tokens": proposed,
        "accepted_tokens": accepted,
        "acceptance_rate": accepted / proposed if proposed else None,
        "proposed_per_position": [int(x) for x in metrics.get("proposed_per_position") or []],
        "accepted_per_position": [int(x) for x in metrics.get("accepted_per_position") or []],
        "cache_lookups": lookups,
        "cache_hits": hits,
        "cache_hit_rate": hits / lookups if lookups else None,
        "backups_jit": _total(metrics, "backups_jit"),
        "backups_fast": _total(metrics, "backups_fast"),
        "time_to_first_token_s": metrics.get("time_to_first_token_s"),
    }


class _RuntimeCollector:
    """Runtime-wide figures read at scrape time."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Any:
        try:
            m = self._read()
        except Exception:
            return
        rounds = CounterMetricFamily("saguaro_runtime_rounds", "Batched verification rounds the runtime ran")
        rounds.add_metric([], float(_total(m, "batched_rounds")))
        yield rounds
        rows = CounterMetricFamily("saguaro_runtime_round_rows",
                                   "Rows (requests) verified over all rounds; / rounds = mean batch size")
        rows.add_metric([], float(_total(m, "round_rows")))
        yield rows
        plain = CounterMetricFamily("saguaro_runtime_plain_rounds",
                                    "Rounds that did not speculate: the runtime measured plain batched decoding "
                                    "faster at that batch size (backup auto)")
        plain.add_metric([], float(_total(m, "plain_rounds")))
        yield plain
        lent = CounterMetricFamily("saguaro_runtime_forwards_on_draft_threads",
                                   "ssd target forwards that also ran on the draft's threads, idle at the time")
        lent.add_metric([], float(_total(m, "forwards_on_draft_threads")))
        yield lent
        catch_up = CounterMetricFamily("saguaro_runtime_catch_up_rounds",
                                       "ssd rounds run plain while the draft caught up in the background on rows "
                                       "it was far behind on")
        catch_up.add_metric([], float(_total(m, "catch_up_rounds")))
        yield catch_up
        without = CounterMetricFamily("saguaro_runtime_rounds_without_draft",
                                      "ssd rounds of a lone request run plain on the draft's threads too: its draft "
                                      "could not have caught up before the request ends")
        without.add_metric([], float(_total(m, "rounds_without_draft")))
        yield without
        hidden = GaugeMetricFamily("saguaro_draft_hidden_fraction",
                                   "Fraction of the draft's tree time hidden behind target verification")
        hidden.add_metric([], float(m.get("draft_hidden_fraction") or 0.0))
        yield hidden


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_reader() -> Optional[Callable[[], int]]:
    """glibc's mallinfo2 (2.33+): the bytes malloc has handed out and not taken back; None elsewhere."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []

    def read() -> int:
        info = fn()
        return int(info.uordblks + info.hblkhd)  # in use in the arenas + in mmapped chunks

    return read


def _resident_bytes() -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class _ProcessMemoryCollector:
    """The server process's memory, read at scrape time (Linux). Resident memory also grows when pages
    of buffers allocated long ago are first written (the speculation cache's q slab fills this way);
    the heap in use grows only with what is allocated and not freed, so a leak shows there."""

    def __init__(self) -> None:
        self._heap = _heap_reader()

    def collect(self) -> Any:
        rss = _resident_bytes()
        if rss is not None:
            g = GaugeMetricFamily("saguaro_process_resident_memory_bytes", "Resident memory of the server process")
            g.add_metric([], float(rss))
            yield g
        if self._heap is not None:
            g = GaugeMetricFamily("saguaro_process_heap_in_use_bytes",
                                  "Bytes the C allocator (glibc malloc: Python's larger objects, tensors, the "
                                  "runtime's buffers) has handed out and not taken back")
            g.add_metric([], float(self._heap()))
            yield g


class ServerMetrics:
    """The server's Prometheus metrics; ``runtime_metrics`` reads the runtime's aggregate figures."""

    def __init__(self, runtime_metrics: Optional[Callable[[], dict[str, Any]]] = None) -> None:
        r = self.registry = CollectorRegistry()
        self.running = Gauge("saguaro_requests_running", "Requests in the runtime's batch", registry=r)
        self.waiting = Gauge("saguaro_requests_waiting", "Requests waiting for a batch slot (--max-batch)",
                             registry=r)
        self.requests = Counter("saguaro_requests", "Finished requests", ["finish_reason"], registry=r)
        self.ttft = Histogram("saguaro_time_to_first_token_seconds", "Time from arrival to the first token",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("saguaro_inter_token_latency_seconds",
                             "Time between consecutive tokens of a request (a round's tokens share its gap)",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("saguaro_request_latency_seconds", "Time from arrival to the last token",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("saguaro_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.generated = Counter("saguaro_generation_tokens", "Tokens generated for finished requests", registry=r)
        self.proposed = Counter("saguaro_draft_proposed_tokens", "Draft tokens proposed for verification",
                                registry=r)
        self.accepted = Counter("saguaro_draft_accepted_tokens", "Draft tokens the target accepted", registry=r)
        self.proposed_at = Counter("saguaro_draft_proposed_tokens_by_position",
                                   "Draft tokens proposed, by position in the speculation", ["position"], registry=r)
        self.accepted_at = Counter("saguaro_draft_accepted_tokens_by_position",
                                   "Draft tokens accepted, by position in the speculation", ["position"], registry=r)
        self.lookups = Counter("saguaro_cache_lookups", "Speculation cache look-ups", registry=r)
        self.hits = Counter("saguaro_cache_hits", "Speculation cache hits", registry=r)
        self.backups = Counter("saguaro_backups", "Backup speculations after a cache miss", ["kind"], registry=r)
        if runtime_metrics is not None:
            r.register(_RuntimeCollector(runtime_metrics))
        r.register(_ProcessMemoryCollector())

    def exposition(self) -> bytes:
        """The text format for GET /metrics."""
        return generate_latest(self.registry)

    def finished(self, figures: dict[str, Any], prompt_tokens: int, finish_reason: str) -> None:
        """Count one finished request from its response's ``saguaro`` figures."""
        self.requests.labels(finish_reason=finish_reason).inc()
        self.prompt_tokens.inc(prompt_tokens)
        self.generated.inc(figures["generated_tokens"])
        self.proposed.inc(figures["proposed_tokens"])
        self.accepted.inc(figures["accepted_tokens"])
        for i, n in enumerate(figures["proposed_per_position"]):
            self.proposed_at.labels(position=str(i)).inc(n)
        for i, n in enumerate(figures["accepted_per_position"]):
            self.accepted_at.labels(position=str(i)).inc(n)
        self.lookups.inc(figures["cache_lookups"])
        self.hits.inc(figures["cache_hits"])
        self.backups.labels(kind="jit").inc(figures["backups_jit"])
        self.backups.labels(kind="fast").inc(figures["backups_fast"])


class RequestClock:
    """One request's token timings: TTFT at its first token, inter-token gaps after that."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._m = metrics
        self.arrived = time.perf_counter()
        self._last: Optional[float] = None

    def tokens(self, delta: StreamDelta) -> None:
        """Observe a delta's tokens: a gap of g over n tokens counts as n gaps of g / n."""
        n = len(delta.token_ids)
        if n == 0:
            return
        now = time.perf_counter()
        if self._last is None:
            self._m.ttft.observe(now - self.arrived)
            n -= 1
        elif n:
            gap = (now - self._last) / n
            for _ in range(n):
                self._m.itl.observe(gap)
        self._last = now

    def done(self) -> None:
        self._m.e2e.observe(time.perf_counter() - self.arrived)
