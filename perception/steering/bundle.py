"""Ship a model as the bundled one only when it meets the targets: `make model`'s last step.

    python -m perception.steering.bundle MODEL REGRESSION_REPORT HELDOUT_REPORT

The model must reach MDBC >= 200 m and autonomy >= 95 % with the CNN alone both over the
whole regression suite and on the 30 held-out worlds (``rover eval --only 'heldout_*' --seeds
10``). Then the checkpoint and its regression report (the baseline CI compares with) are copied
into ``perception/steering/bundled/``; otherwise nothing changes and it says which figure fell
short (exit 1).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from perception.steering.bundled import BUNDLED_MODEL, BUNDLED_REPORT
from perception.steering.report import TARGET_AUTONOMY_PCT, TARGET_MDBC_M


def shortfalls(regression: dict[str, Any], heldout: dict[str, Any]) -> list[str]:
    """What keeps the model from the targets, one line each (empty: it meets them)."""
    problems = []
    for name, figures in (
        ("regression suite", regression["overall"].get("model", {})),
        ("held-out worlds", heldout["held_out"].get("model", {})),
    ):
        mdbc = figures.get("mean_distance_between_collisions_m", 0.0)
        autonomy = figures.get("autonomy_pct", 0.0)
        if not figures.get("runs"):
            problems.append(f"{name}: no runs of the model")
            continue
        if mdbc < TARGET_MDBC_M:
            problems.append(f"{name}: MDBC {mdbc:.1f} m < {TARGET_MDBC_M:.0f} m")
        if autonomy < TARGET_AUTONOMY_PCT:
            problems.append(f"{name}: autonomy {autonomy:.1f} % < {TARGET_AUTONOMY_PCT:.0f} %")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Copy the model and its report into the bundle when the targets are met."""
    parser = argparse.ArgumentParser(
        prog="python -m perception.steering.bundle", description=__doc__
    )
    parser.add_argument("model")
    parser.add_argument("regression_report")
    parser.add_argument("heldout_report")
    args = parser.parse_args(argv)
    regression = json.loads(Path(args.regression_report).read_text())
    heldout = json.loads(Path(args.heldout_report).read_text())
    problems = shortfalls(regression, heldout)
    if problems:
        print("not bundled, the targets are not met: " + "; ".join(problems))
        return 1
    shutil.copyfile(args.model, BUNDLED_MODEL)
    shutil.copyfile(args.regression_report, BUNDLED_REPORT)
    print(f"bundled: {BUNDLED_MODEL} and its report {BUNDLED_REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
