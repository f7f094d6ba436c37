"""The layers of docs/architecture: perception/, sim/ and drivers/ are libraries.

They import no ZeroMQ and nothing of the runtime's bus, nodes, stack, manager, CLI or benches,
not even lazily inside a function: a bus adapter belongs in rover/nodes/. Read from the source
(ast), so a new import that crosses a layer fails here with its file and line.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("perception", "sim", "drivers")
FORBIDDEN = (
    "zmq",
    "rover.bus",
    "rover.node",
    "rover.nodes",
    "rover.stack",
    "rover.manager",
    "rover.cli",
    "rover.bench",
    "rover.ready",
    "rover.introspect",
    "rover.remote",
    "rover.remote_client",
    "rover.curve",
    "rover.console",
    "rover.rig",
    "rover.doctor",
    "rover.replay",
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a file, top level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def crosses(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def test_libraries_import_no_bus_node_stack_cli_or_bench():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for package in LIBRARIES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if crosses(module)
    ]
    assert not offenders, "layer crossed (move the adapter to rover/nodes/):\n" + "\n".join(
        offenders
    )


def test_the_check_sees_a_crossing(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("import zmq\nfrom rover import bus\ndef f():\n    from rover.stack import x\n")
    crossing = [m for _, m in imported_modules(path) if crosses(m)]
    assert crossing == ["zmq", "rover.bus", "rover.stack", "rover.stack.x"]


PACKAGES = ("rover", "perception", "sim", "drivers")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def runtime_imports(path: Path, modules: dict[str, Path], me: str) -> set[str]:
    """The project modules `me` imports when it runs (lazily too; not under TYPE_CHECKING,
    not its own packages, which a submodule's `from pkg import sibling` names)."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules and m != me and not me.startswith(m + ".")}


def test_no_import_circles_between_project_modules():
    modules = project_modules()
    graph = {m: runtime_imports(p, modules, m) for m, p in modules.items()}
    circles = set()
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            here, trail = stack.pop()
            for nxt in graph[here]:
                if nxt == start:
                    circles.add(" -> ".join(sorted(trail)))
                elif nxt not in seen and len(trail) < 8:
                    seen.add(nxt)
                    stack.append((nxt, (*trail, nxt)))
    assert not circles, "import circles (a lazy import that dodges one still counts):\n" + (
        "\n".join(sorted(circles))
    )


# The facts issue 16 removed, kept gone: each check reads the source (ast), names file and line.


def _calls(path: Path, name: str) -> list[ast.Call]:
    """Every call of a function or method called `name` in a file."""
    return [
        n
        for n in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(n, ast.Call)
        and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)
    ]


def getattr_with_default(path: Path) -> list[int]:
    """Lines of ``getattr(args, "x", default)``: an argparse namespace read where a typo
    would read as the default."""
    return [
        c.lineno
        for c in _calls(path, "getattr")
        if len(c.args) == 3 and getattr(c.args[0], "id", None) == "args"
    ]


def policy_tables(path: Path) -> list[int]:
    """Lines of a tuple, list, set or dict naming the simulator's policies."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
        if not isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict) or items is None:
            continue
        names = {i.value for i in items if isinstance(i, ast.Constant)}
        if {"expert", "straight", "random"} <= names:
            found.append(node.lineno)
    return found


def import_errors_swallowed(path: Path) -> list[int]:
    """Lines of ``try: import <project module> except ImportError``: a broken import of our own
    would read as a missing feature instead of failing with its traceback."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Try):
            continue
        ours = any(
            m.split(".")[0] in PACKAGES
            for stmt in node.body
            for m in (
                [a.name for a in stmt.names]
                if isinstance(stmt, ast.Import)
                else [stmt.module or ""]
                if isinstance(stmt, ast.ImportFrom)
                else []
            )
        )
        catches = any(
            "ImportError" in ast.unparse(h.type) for h in node.handlers if h.type is not None
        )
        if ours and catches:
            found.append(node.lineno)
    return found


def _production_files() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def test_the_run_request_is_typed_not_an_argparse_namespace_read_with_getattr():
    run_path = ("stack.py", "manager.py", "runspec.py", "summary.py", "nodes/sim.py")
    offenders = [
        f"rover/{name}:{line}"
        for name in run_path
        for line in getattr_with_default(ROOT / "rover" / name)
    ]
    assert not offenders, "argparse read with getattr(args, ..., default):\n" + "\n".join(offenders)
    for name in ("stack.py", "manager.py", "runspec.py"):
        modules = [m for _, m in imported_modules(ROOT / "rover" / name)]
        assert "argparse" not in modules or name == "runspec.py", name
    # the simulator node's settings are declared once (rover.runspec.SimSpec), not as flags
    flags = [c.args[0].value for c in _calls(ROOT / "rover/nodes/sim.py", "add_argument")]
    assert flags == ["--spec"]


def test_the_robot_config_is_read_once_per_process():
    counts = {
        name: len(_calls(ROOT / "rover" / name, "load_config"))
        for name in ("stack.py", "manager.py", "nodes/sim.py")
    }
    assert counts == {"stack.py": 1, "manager.py": 0, "nodes/sim.py": 0}


def test_libraries_start_no_stack_through_the_cli():
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in LIBRARIES
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and node.value == "rover.cli"
    ]
    assert not offenders, "`python -m rover.cli ...` built as strings:\n" + "\n".join(offenders)


def test_the_simulator_policies_are_named_in_one_place():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _production_files()
        if path != ROOT / "sim/policies.py"
        for line in policy_tables(path)
    ]
    assert not offenders, "policy names listed outside sim/policies.py:\n" + "\n".join(offenders)


def test_no_import_of_our_own_turns_into_a_missing_feature():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _production_files()
        for line in import_errors_swallowed(path)
    ]
    assert not offenders, "ImportError of a project module caught:\n" + "\n".join(offenders)


def test_messages_and_the_default_rig_reach_into_no_higher_layer():
    """rover/messages.py imports nothing of perception; the robot's default rig is a leaf
    (drivers/stereo_rig.py) that perception/stereo.py reads instead of the simulator's camera."""
    modules = project_modules()
    assert not {
        m for m in runtime_imports(ROOT / "rover/messages.py", modules, "rover.messages")
    } - {"rover.errors"}
    assert runtime_imports(ROOT / "drivers/stereo_rig.py", modules, "drivers.stereo_rig") == set()
    stereo = runtime_imports(ROOT / "perception/stereo.py", modules, "perception.stereo")
    assert not [m for m in stereo if m.startswith("sim")]


def test_the_nodes_share_one_main_loop():
    for name in ("control.py", "traversability.py"):
        path = ROOT / "rover/nodes" / name
        assert _calls(path, "spin"), f"{name} does not use rover.node.spin"
        loops = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.While)]
        assert not [ast.unparse(n.test) for n in loops if "stop" in ast.unparse(n.test)], name


def test_the_checks_see_what_they_look_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "x = getattr(args, 'seed', None)\n"
        "NAMES = ('expert', 'straight', 'random')\n"
        "try:\n    from rover.recording import reader\nexcept ImportError:\n    reader = None\n"
        "try:\n    import distributed\nexcept ImportError:\n    pass\n"
    )
    assert getattr_with_default(probe) == [1]
    assert policy_tables(probe) == [2]
    assert import_errors_swallowed(probe) == [3]


def test_tests_import_no_test_file_and_never_skip_our_own_modules(tmp_path):
    """Shared test helpers are fixtures (conftest.py), never imports of another test file; a
    broken import of our own code fails a test, never skips it (importorskip, or a try/except
    ImportError around it)."""
    own = ("rover", "perception", "sim", "drivers")

    def is_own(module: str) -> bool:
        return module.split(".")[0] in own

    def offences(folder: Path) -> list[str]:
        found = []
        for path in sorted(folder.rglob("*.py")):
            where = path.relative_to(folder)
            found += [
                f"{where}:{line}: imports {module}"
                for line, module in imported_modules(path)
                if module == "tests" or module.startswith("tests.")
            ]
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", getattr(node.func, "id", "")) == "importorskip"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and is_own(str(node.args[0].value))
                ):
                    found.append(f"{where}:{node.lineno}: importorskip({node.args[0].value!r})")
                if isinstance(node, ast.Try) and any(
                    "ImportError" in ast.unparse(h.type or ast.Name("")) for h in node.handlers
                ):
                    tried = [
                        name
                        for stmt in node.body
                        for n in ast.walk(stmt)
                        for name in (
                            [a.name for a in n.names] if isinstance(n, ast.Import) else
                            [n.module or ""] if isinstance(n, ast.ImportFrom) else []
                        )
                    ]  # fmt: skip
                    if any(is_own(m) for m in tried):
                        found.append(f"{where}:{node.lineno}: try/except ImportError of our own")
        return found

    offenders = offences(ROOT / "tests")
    assert not offenders, "make it a fixture in conftest.py, or let it fail:\n" + "\n".join(
        offenders
    )
    (tmp_path / "test_bad.py").write_text(
        "import pytest\nfrom tests.rover.conftest import x\nsim = pytest.importorskip('sim.x')\n"
        "try:\n    import rover.recording\nexcept ImportError:\n    pass\n"
    )
    assert sorted(o.split(": ", 1)[0] for o in offences(tmp_path)) == [
        "test_bad.py:2",
        "test_bad.py:2",
        "test_bad.py:3",
        "test_bad.py:4",
    ]
