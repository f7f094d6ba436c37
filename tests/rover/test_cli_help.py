"""Every help text is true and shows defaults; kinds and bad namespaces get one clear line."""

from __future__ import annotations

import pytest

from rover.cli import main
from rover.errors import EXIT_CODES, EXIT_FAILED, EXIT_USAGE


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`rover ARGV` in this process: (exit code, stdout, stderr); --help exits too."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_top_level_help_lists_the_exit_codes(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "exit codes:" in out
    for number, meaning in EXIT_CODES.items():
        assert f"{number:<4} {meaning[:30]}" in " ".join(out.split("\n"))


def test_train_help_lists_its_kinds_and_exits_0(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    assert "steering" in out and "traversability" in out and "KIND --help" in out


def test_an_unknown_kind_says_so(capsys):
    code, _, err = run(capsys, "train", "foo")
    assert code == EXIT_USAGE
    assert err.strip().splitlines()[-1] == (
        "rover train: error: unknown kind 'foo': give one of steering, traversability"
    )
    code, _, err = run(capsys, "train")
    assert code == EXIT_USAGE and "give a kind" in err


def test_eval_help_shows_the_readme_usage_and_the_other_kind(capsys):
    code, out, _ = run(capsys, "eval", "--help")
    assert code == 0
    assert out.startswith("usage: rover eval [-h] --model MODEL")
    assert "other kinds: rover eval traversability --help" in out


def test_docstring_descriptions_keep_their_paragraphs(capsys):
    _, out, _ = run(capsys, "train", "traversability", "--help")
    assert "\n\n    rover train traversability recordings/run1" in out  # the example block


def test_bench_help_describes_every_bench(capsys):
    _, out, _ = run(capsys, "bench", "--help")
    assert "benchmark: " not in out
    assert "round trip" in out and "samples/s" in out and "simulator core" in out


def test_sim_help_lists_every_bundled_scenario_and_defaults_show(capsys):
    _, out, _ = run(capsys, "drive", "--help")
    flat = " ".join(out.split())
    assert "corridor, forest, open, trail_long, or a .toml path" in flat
    assert "(default: 0.0)" in flat and "(default: None)" not in flat
    assert "(default: False)" not in flat
    _, out, _ = run(capsys, "topics", "--help")
    assert "how long to listen (default: 3.0)" in out


def test_topics_with_nothing_running_says_so(capsys):
    code, out, _ = run(capsys, "topics", "--namespace", "nobodyhere42", "--seconds", "0.2")
    assert code == EXIT_FAILED
    assert out.startswith("no stack in namespace 'nobodyhere42'")


@pytest.mark.parametrize("namespace", ["bad/ns", "a b"])
def test_topics_rejects_a_namespace_the_config_rejects(capsys, namespace):
    code, out, err = run(capsys, "topics", "--namespace", namespace, "--seconds", "0.1")
    assert code == EXIT_USAGE and out == ""
    assert err.strip() == (
        f"rover: error: [bus] namespace = {namespace!r}: use letters, digits, - and _"
    )
