"""Figures of a set of closed-loop runs, regression checks, and the HTML page of a report.

Aggregates follow the simulator's per-run definitions over the pooled runs: distances,
collisions and elapsed time add up; mean distance between collisions is total distance over
collisions (over 1 when there were none: then it is a lower bound); autonomy is PilotNet's
100 * (1 - 6 s * interventions / elapsed).
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

from perception.steering.budget import budget_text
from sim.metrics import INTERVENTION_COST_S

TARGET_MDBC_M = 200.0  # ten times DAVE's 20 m
TARGET_AUTONOMY_PCT = 95.0  # PilotNet reached 98% on roads
STALLED_M_PER_RUN = 5.0  # less than this per run: the driver barely moved, nothing to judge


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled figures of successful runs (the failed ones are counted, not averaged in)."""
    ok = [r for r in runs if "error" not in r]
    distance = sum(r["distance_m"] for r in ok)
    collisions = sum(r["collisions"] for r in ok)
    elapsed = sum(r["elapsed_s"] for r in ok)
    autonomy = 100.0 if elapsed <= 0 else 100.0 * (1 - INTERVENTION_COST_S * collisions / elapsed)
    clearances = [r["min_clearance_m"] for r in ok if r.get("min_clearance_m") is not None]
    return {
        "runs": len(ok),
        "failed_runs": len(runs) - len(ok),
        "distance_m": round(distance, 3),
        "collisions": collisions,
        "mean_distance_between_collisions_m": round(distance / max(1, collisions), 3),
        "takeover_m": round(sum(r.get("takeover_m") or 0.0 for r in ok), 3),
        "autonomy_pct": round(max(0.0, autonomy), 3),
        "goal_progress": round(sum(r["goal_progress"] for r in ok) / len(ok), 4) if ok else 0.0,
        "goals_reached": sum(bool(r["reached_goal"]) for r in ok),
        "elapsed_s": round(elapsed, 3),
        "min_clearance_m": round(min(clearances), 4) if clearances else None,
        "steering_smoothness": round(sum(r["steering_smoothness"] for r in ok) / len(ok), 5)
        if ok
        else 0.0,
        "late_frames": sum(r.get("late_frames") or 0 for r in ok),
    }


def _poisson_cdf(k: int, mu: float) -> float:
    term = total = math.exp(-mu)
    for i in range(1, k + 1):
        term *= mu / i
        total += term
    return total


def _solve_mu(k: int, want: float, upper: bool) -> float:
    """The Poisson mean at which P(X <= k) (upper) or P(X >= k) (lower) equals `want`."""
    lo, hi = 0.0, 10.0 * k + 50.0
    for _ in range(100):
        mu = (lo + hi) / 2
        p = _poisson_cdf(k, mu) if upper else 1.0 - _poisson_cdf(k - 1, mu)
        if (p > want) == upper:
            lo = mu
        else:
            hi = mu
    return (lo + hi) / 2


def mdbc_interval(distance_m: float, collisions: int, level: float = 0.95):
    """Exact (Poisson) confidence interval of the mean distance between collisions, in m:
    collisions as a Poisson process over the distance driven. No collision: (lower, None)."""
    tail = (1.0 - level) / 2
    low = distance_m / _solve_mu(collisions, tail, upper=True)
    high = distance_m / _solve_mu(collisions, tail, upper=False) if collisions else None
    return low, high


def interval_text(interval) -> str:
    """``[120.3, 840.0]`` -> ``", 95% interval 120-840 m"``; no upper bound: ``">= 120"``."""
    if not interval:
        return ""
    low, high = interval
    return f", 95% interval {low:.0f}-{high:.0f} m" if high else f", 95% interval >= {low:.0f} m"


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets on the held-out scenarios, whether the model meets them, and how
    sure that is: the MDBC's 95% interval, "too little distance" when no collision happened in
    fewer metres than the target (the MDBC is then only known to exceed them), and a warning
    when the interval includes the target (a sample too small to tell either way)."""
    held = report["held_out"].get("model", {})
    mdbc = held.get("mean_distance_between_collisions_m", 0.0)
    autonomy = held.get("autonomy_pct", 0.0)
    distance, collisions = held.get("distance_m", 0.0), held.get("collisions", 0)
    met = bool(held.get("runs")) and mdbc >= TARGET_MDBC_M and autonomy >= TARGET_AUTONOMY_PCT
    low, high = mdbc_interval(distance, collisions) if distance > 0 else (0.0, None)
    if not held.get("runs"):
        verdict = "no held-out runs"
    elif distance < STALLED_M_PER_RUN * held["runs"]:
        met = False  # no collision and no intervention because it did not drive
        verdict = (
            f"not met: the model barely moved ({distance:.1f} m in {held['runs']} run(s)), "
            "so its autonomy and MDBC mean nothing"
        )
    elif not collisions and distance < TARGET_MDBC_M:
        verdict = f"too little distance to judge: drive more than {TARGET_MDBC_M:.0f} m (--seeds)"
    else:
        verdict = "met" if met else "not met"
        if low <= TARGET_MDBC_M and (high is None or high >= TARGET_MDBC_M):
            verdict += (
                f" on {distance:.0f} m, too little to be sure: the MDBC's 95% interval "
                f"includes {TARGET_MDBC_M:.0f} m (drive more worlds: --seeds)"
            )
    return {
        "held_out_mdbc_m": mdbc,
        "held_out_mdbc_95ci_m": [round(low, 1), None if high is None else round(high, 1)],
        "target_mdbc_m": TARGET_MDBC_M,
        "held_out_autonomy_pct": autonomy,
        "target_autonomy_pct": TARGET_AUTONOMY_PCT,
        "met": met,
        "verdict": verdict,
        "driven": driven_text(held),
    }


def capped_text(report: dict[str, Any]) -> str:
    """What `--duration` did to the runs, or "" when they ran to their end."""
    cap = report.get("duration_s")
    if not cap:
        return ""
    return (
        f"runs capped at {cap:g} s of simulated time by --duration: distances, collisions and "
        "goals are those of the capped runs"
    )


def driven_text(fig: dict[str, Any]) -> str:
    """``201 m driven, 2 of 3 goals reached (goal progress 0.77)``: what the figures rest on."""
    if not fig.get("runs"):
        return "no runs"
    return (
        f"{fig.get('distance_m', 0.0):.1f} m driven, {fig.get('goals_reached', 0)} of "
        f"{fig['runs']} goals reached (goal progress {fig.get('goal_progress', 0.0):.2f})"
    )


def compare(report: dict[str, Any], baseline: dict[str, Any], limits: Any) -> list[str]:
    """Regressions of the model against a baseline report, on the runs both reports hold.

    Pooling only the common (scenario, seed) runs makes a short CI suite comparable with the
    full report it was cut from. `limits` carries max_autonomy_drop (points),
    max_mdbc_drop_pct and max_extra_collisions.
    """
    if report.get("duration_s") != baseline.get("duration_s"):
        return [
            f"baseline ran with duration {baseline.get('duration_s')}, this run with "
            f"{report.get('duration_s')}: not comparable; rerun with the same --duration"
        ]
    if report.get("safety_driver_s", 0.0) != baseline.get("safety_driver_s", 0.0):
        return [
            f"baseline ran with --safety-driver {baseline.get('safety_driver_s', 0.0):g}, this "
            f"run with {report.get('safety_driver_s', 0.0):g}: not comparable; rerun with the same"
        ]
    new_runs = _model_runs(report)
    old_runs = _model_runs(baseline)
    common = sorted(set(new_runs) & set(old_runs))
    if not common:
        return ["baseline shares no (scenario, seed) run with this one: nothing to compare"]
    problems = []
    held = [k for k in common if new_runs[k]["held_out"]]
    for group, keys in (("common runs", common), ("held-out runs", held)):
        if not keys:
            continue
        new = aggregate([new_runs[k] for k in keys])
        old = aggregate([old_runs[k] for k in keys])
        checks = [
            (
                "autonomy_pct",
                new["autonomy_pct"] < old["autonomy_pct"] - limits.max_autonomy_drop,
                f"more than {limits.max_autonomy_drop} points lower",
            ),
            (
                "mean_distance_between_collisions_m",
                new["mean_distance_between_collisions_m"]
                < old["mean_distance_between_collisions_m"] * (1 - limits.max_mdbc_drop_pct / 100),
                f"more than {limits.max_mdbc_drop_pct}% lower",
            ),
            (
                "collisions",
                new["collisions"] > old["collisions"] + limits.max_extra_collisions,
                f"more than {limits.max_extra_collisions} more",
            ),
            ("goal_progress", new["goal_progress"] < old["goal_progress"] - 0.05, "0.05 lower"),
        ]
        for key, worse, how in checks:
            if worse:
                problems.append(f"{group} {key}: {old[key]} -> {new[key]} ({how})")
    return problems


def _model_runs(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (r["scenario"], r["seed"]): r
        for r in report.get("runs", [])
        if r.get("driver") == "model" and "error" not in r
    }


_COLUMNS = (
    ("distance_m", "distance m", "{:.1f}"),
    ("collisions", "collisions", "{}"),
    ("mean_distance_between_collisions_m", "MDBC m", "{:.1f}"),
    ("autonomy_pct", "autonomy %", "{:.1f}"),
    ("goal_progress", "goal", "{:.2f}"),
    ("goals_reached", "goals reached", "{}"),
    ("takeover_m", "safety driver m", "{:.1f}"),
)


def _row(label: str, driver: str, fig: dict[str, Any]) -> str:
    cells = [label, driver] + [
        fmt.format(fig[key]) if fig.get(key) is not None else "" for key, _, fmt in _COLUMNS
    ]
    if fig.get("goals_reached") is not None and fig.get("runs"):
        cells[-2] = f"{fig['goals_reached']}/{fig['runs']}"  # of how many
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _targets_html(t: dict[str, Any], verdict: str, interval: str) -> str:
    if t.get("driven") == "no runs" or verdict == "no held-out runs":
        return "targets on held-out scenarios: <b>no held-out runs</b> in this suite"
    return (
        f"targets on held-out scenarios: MDBC {t['held_out_mdbc_m']:.1f} m{interval} (target "
        f"{t['target_mdbc_m']:.0f}), autonomy {t['held_out_autonomy_pct']:.1f}% (target "
        f"{t['target_autonomy_pct']:.0f}): <b>{html.escape(verdict)}</b>"
        + (f"; {html.escape(t['driven'])}" if t.get("driven") else "")
    )


def write_html(report: dict[str, Any], path: Path) -> Path:
    """One page: the metrics table (overall, held out, per scenario) and each run's picture."""
    head = "".join(f"<th>{h}</th>" for h in ["", "driver"] + [c[1] for c in _COLUMNS])
    rows = []
    for label in ("overall", "held_out"):
        rows += [
            _row(label.replace("_", " "), d, f)
            for d, f in report[label].items()
            if f.get("runs") or f.get("failed_runs")  # no runs: no figures, not 100 % autonomy
        ]
    for name, entry in report["scenarios"].items():
        tag = f"{name} (held out)" if entry["held_out"] else name
        rows += [_row(tag, d, f) for d, f in entry.items() if d != "held_out"]
    pictures = []
    for run in report["runs"]:
        png = run.get("trajectory_png")
        caption = f"{run['driver']} - {run['run']}"
        if "error" in run:
            pictures.append(f"<figure><figcaption>{html.escape(caption)}: failed, ")
            pictures[-1] += f"{html.escape(run['error'])}</figcaption></figure>"
        elif png:
            rel = os.path.relpath(png, path.parent) if os.path.isabs(png) else png
            pictures.append(
                f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    t = report["targets"]
    verdict = t.get("verdict", "met" if t["met"] else "not met")
    interval = interval_text(t.get("held_out_mdbc_95ci_m"))
    inference = " ".join(report.get("inference", {}).values()) or "unrecorded settings"
    notes = f"<p><b>{html.escape(capped_text(report))}</b></p>" if capped_text(report) else ""
    if report.get("data_budget"):
        notes += f"<p>the model learned from {html.escape(budget_text(report['data_budget']))}</p>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rover eval: {html.escape(report["model"])}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
figure{{display:inline-block;margin:8px}} img{{max-width:480px}}</style></head><body>
<h1>rover eval</h1>
<p>model <code>{html.escape(report["model"])}</code> ({html.escape(report["model_arch"])}),
suite <code>{html.escape(report["suite"])}</code>, {report["seeds_per_scenario"]} world(s) per
scenario, safety driver {report.get("safety_driver_s", 0.0):g} s after each collision,
steering node on {html.escape(inference)}, {html.escape(report["created"])}</p>
{notes}
<p>{_targets_html(t, verdict, interval)}</p>
{"".join(f"<p><b>regression</b>: {html.escape(r)}</p>" for r in report.get("regressions", []))}
<table><tr>{head}</tr>{"".join(rows)}</table>
<h2>trajectories</h2>{"".join(pictures)}
</body></html>
"""
    path.write_text(page)
    return path
