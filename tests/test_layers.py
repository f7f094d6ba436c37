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
