"""The CPU other programs use while ours run, measured on real processes burning real CPU."""

from __future__ import annotations

import subprocess
import sys
import time

from rover.cpu_load import _TICKS_PER_S, CpuWatch, OtherLoad, _own_ticks


def test_a_program_burning_cpu_counts_as_another_programs_unless_it_is_ours():
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        pids = [p.pid for p in burners]
        theirs, ours = CpuWatch([]), CpuWatch(pids)
        burned0 = _own_ticks(pids)
        theirs.start()
        ours.start()
        started = time.monotonic()
        deadline = time.monotonic() + 30
        while _own_ticks(pids) - burned0 < _TICKS_PER_S:  # a core-second of theirs, however loaded
            assert time.monotonic() < deadline, "the burners never ran"
            time.sleep(0.05)  # polling the burners' CPU time, not a fixed wait
        seen_ours, seen_theirs = ours.stop(), theirs.stop()
        window_s = time.monotonic() - started
        burned_s = (_own_ticks(pids) - burned0) / _TICKS_PER_S
    finally:
        for p in burners:
            p.kill()
            p.wait()
    # what the burners used is other programs' CPU, unless they are ours
    assert seen_theirs.other_cores * window_s >= 0.8 * burned_s
    assert (seen_theirs.other_cores - seen_ours.other_cores) * window_s >= 0.8 * burned_s
    assert "cores busy" in seen_theirs.text() and seen_theirs.cores >= 1


def test_busy_means_half_a_core_or_a_tenth_of_many():
    assert OtherLoad(0.6, 2, 1.0).busy() and not OtherLoad(0.3, 2, 1.0).busy()
    assert not OtherLoad(1.0, 16, 1.0).busy() and OtherLoad(2.0, 16, 3.0).busy()
