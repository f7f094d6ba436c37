"""How busy the rest of the machine was while our own processes ran: the CPU that other
programs used, in cores, over a measured window (Linux: /proc; elsewhere the load average).

A latency check on a machine where a compile was running measures the compile as much as the
node: `OtherLoad` lets it say which (`rover doctor`'s node budget check).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class OtherLoad:
    """CPU other programs used over the window (cores: 1.0 is one core all the time)."""

    other_cores: float
    cores: int
    load_average: float  # the 1-minute load average at the end, ours included

    def busy(self) -> bool:
        """True when other programs took enough CPU to stretch our latencies: half a core,
        or a tenth of the machine's cores when it has many."""
        return self.other_cores >= max(0.5, 0.1 * self.cores)

    def text(self) -> str:
        return (
            f"other programs kept {self.other_cores:.1f} of {self.cores} cores busy "
            f"(load average {self.load_average:.1f})"
        )


def _busy_ticks() -> int | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal


def _own_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                after_name = f.read().rsplit(")", 1)[1].split()
            total += int(after_name[11]) + int(after_name[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue  # a process that exited: its last ticks are lost, a small undercount
    return total


class CpuWatch:
    """Measures, from `start()` to `stop()`, the CPU used by every process but `pids`."""

    def __init__(self, pids: list[int]):
        self.pids = [os.getpid(), *pids]
        self._start: tuple[float, int | None, int] = (0.0, None, 0)

    def start(self) -> None:
        self._start = (time.monotonic(), _busy_ticks(), _own_ticks(self.pids))

    def stop(self) -> OtherLoad:
        t0, busy0, own0 = self._start
        elapsed_s = max(time.monotonic() - t0, 1e-3)
        busy1, cores = _busy_ticks(), os.cpu_count() or 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if busy0 is None or busy1 is None:  # no /proc: the load average less our processes
            return OtherLoad(max(0.0, load - len(self.pids)), cores, load)
        other = (busy1 - busy0) - (_own_ticks(self.pids) - own0)
        return OtherLoad(max(0.0, other / _TICKS_PER_S / elapsed_s), cores, load)
