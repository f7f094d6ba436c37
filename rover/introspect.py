"""`rover topics`: what is live on the bus, with measured rate, bandwidth and drops."""

from __future__ import annotations

import argparse
import json
import os
import time

from rover import bus, topics
from rover.bench.common import print_table
from rover.errors import EXIT_FAILED, ConfigError
from rover.health import HealthLog

FORWARDED = ("control/command", "motor/state")  # sent at a fixed rate and on each input


def measure_topics(
    bus_cfg: topics.BusConfig, seconds: float, health: HealthLog | None = None
) -> list[dict]:
    """Listen to every registered topic for `seconds`; one stats dict per topic. The health
    topics' events go into `health` (faults and how often each happened)."""
    subs = [bus.Subscriber(t, bus_cfg, newest=False, hwm=1000) for t in topics.ALL_TOPICS]
    health = health if health is not None else HealthLog()
    first_ns: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            for sub in bus.wait_any(subs, left * 1000):
                for msg in sub.drain():
                    first_ns.setdefault(sub.topic.name, sub.last_recv_ns)
                    if sub.topic in topics.HEALTH_TOPICS:
                        health.take(msg)
        rows = []
        for sub in subs:
            t, s = sub.topic, sub.stats
            span_s = (sub.last_recv_ns - first_ns.get(t.name, 0)) / 1e9 if s.received > 1 else 0
            rate = (s.received - 1) / span_s if span_s > 0 else 0.0
            rows.append(
                {
                    "topic": t.name,
                    "type": t.msg_type.__name__,
                    "nominal_hz": t.rate_hz,
                    "rate_hz": round(rate, 2),
                    "messages": s.received,
                    "bandwidth_kbps": round(s.bytes * 8 / 1000 / seconds, 1),
                    "drops": s.skipped,
                    "malformed": s.malformed,
                    "alive": s.received > 0 and sub.alive(),
                }
            )
        return rows
    finally:
        for sub in subs:
            sub.close()


def run_topics(args: argparse.Namespace) -> int:
    """Listen, print the table (or JSON); exit 1 when no stack runs in the namespace."""
    if args.seconds <= 0:
        raise ConfigError(f"--seconds {args.seconds:g}: give a positive time to listen")
    remote = f"robot {args.connect}" if getattr(args, "connect", None) else None
    health = HealthLog()
    if remote:
        from rover.remote_client import measure_remote

        running = True
        rows = measure_remote(args.connect, args.keys, args.robot_key, args.seconds)
    else:
        bus_cfg = topics.BusConfig.from_dict({"namespace": args.namespace})  # the config's rules
        running = bus_cfg.transport != "ipc" or os.path.isdir(bus_cfg.ipc_path())
        rows = measure_topics(bus_cfg, args.seconds, health) if running else []
    faults = health.summary()
    where_key = remote or "local"
    if not any(r["messages"] for r in rows):
        why = f"nothing published in {args.seconds:g} s" if running else "no sockets"
        if args.json:
            print(
                json.dumps(
                    {
                        "namespace": args.namespace,
                        "where": where_key,
                        "running": False,
                        "topics": rows,
                    }
                )
            )
        elif remote:
            print(f"{remote}: {why}: is its stack running with --listen?")
        else:
            print(
                f"no stack in namespace {args.namespace!r} ({why}): start one, e.g. "
                "`rover drive --sim forest`, or give its --namespace"
            )
        return EXIT_FAILED
    if args.json:
        print(
            json.dumps(
                {
                    "namespace": args.namespace,
                    "where": where_key,
                    "running": True,
                    "topics": rows,
                    "faults": faults,
                }
            )
        )
        return 0
    print(f"{remote or f'namespace {args.namespace!r}'}, listened {args.seconds:g} s")
    print_table(
        ("topic", "type", "rate Hz", "nominal", "kbit/s", "msgs", "drops", "bad"),
        [
            (
                r["topic"],
                r["type"],
                f"{r['rate_hz']:.1f}" if r["messages"] else "-",
                f"{r['nominal_hz']:g}",
                f"{r['bandwidth_kbps']:.0f}",
                str(r["messages"]),
                str(r["drops"]),
                str(r["malformed"]),
            )
            for r in rows
        ],
    )
    fast = [
        r["topic"]
        for r in rows
        if r["topic"] in FORWARDED and r["messages"] and r["rate_hz"] > 1.1 * r["nominal_hz"]
    ]
    if fast:
        print(
            f"({' and '.join(fast)} above nominal: the control node sends at its fixed rate "
            "and also forwards each new input at once, and the motor controller answers each)"
        )
    for f in faults:
        state = "ACTIVE" if f["active"] else "recovered"
        print(f"fault {f['node']} {f['fault']}: {f['count']} time(s), {state}: {f['text']}")
    return 0
