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
