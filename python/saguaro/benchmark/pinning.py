"""Pin a whole process (every thread it has) to a set of cores and set torch's intra-op threads."""
from __future__ import annotations

import os
import resource
from typing import Sequence


def pin_process(cores: Sequence[int], threads: int) -> None:
    """Every current thread of this process onto ``cores``; torch uses ``threads`` intra-op threads.

    Threads created later inherit the affinity of the thread that creates them, so the workers an
    engine starts afterwards stay inside ``cores`` unless the engine pins them itself.
    """
    import torch

    cpus = set(int(c) for c in cores)
    if not cpus:
        raise ValueError("pin_process needs at least one core")
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # a thread that just exited
            pass
    torch.set_num_threads(int(threads))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    """Resident memory of this process now (MiB)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")
