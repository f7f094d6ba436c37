"""The eval verdict never reads as perfect for a driver that does not move: distance and goals
are in it, and a stalled driver fails the targets whatever its autonomy says."""

from __future__ import annotations

from perception.steering.report import write_html
from tests.perception.steering.test_evaluate import _report, run


def test_a_driver_that_barely_moves_fails_with_the_reason():
    stalled = [run(distance=1.3, held_out=True, goal_progress=0.0, reached_goal=False)] * 3
    report = _report(stalled)
    t = report["targets"]
    assert report["held_out"]["model"]["autonomy_pct"] == 100.0  # no collision: no intervention
    assert not t["met"]
    assert t["verdict"].startswith("not met: the model barely moved (3.9 m in 3 run(s))")
    assert t["driven"] == "3.9 m driven, 0 of 3 goals reached (goal progress 0.00)"


def test_the_verdict_says_what_was_driven(tmp_path):
    report = _report([run(distance=300, held_out=True)])
    assert (
        report["targets"]["driven"] == "300.0 m driven, 1 of 1 goals reached (goal progress 1.00)"
    )
    page = write_html(report, tmp_path / "report.html").read_text()
    assert "300.0 m driven, 1 of 1 goals reached" in page
    assert "<th>goals reached</th>" in page and "<td>1/1</td>" in page


def test_an_empty_model_fails_before_any_run(tmp_path):
    """Not after the suite's expert runs: at once, in one line."""
    import argparse

    import pytest

    from perception.steering import evaluate
    from rover.errors import DataError

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args(["--model", str(empty), "--out", str(tmp_path / "out")])
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        evaluate.run(args)
    assert not (tmp_path / "out").exists()
