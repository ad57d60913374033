"""The code's layout holds: small modules, no import cycle in processing/, a QGIS-free core."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "wetland_unet_plugin")
MAX_LINES = 600


def modules(folder):
    for base, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(base, name)


def test_no_module_is_longer_than_600_lines():
    long = {
        os.path.relpath(p, ROOT): n
        for p in modules(PACKAGE)
        if (n := sum(1 for _ in open(p, encoding="utf-8"))) > MAX_LINES
    }
    assert not long, long


def imports_within(folder):
    """module -> modules of the same folder it imports (at top level or in functions)."""
    graph = {}
    for path in modules(folder):
        if os.path.dirname(path) != folder:
            continue
        name = os.path.splitext(os.path.basename(path))[0]
        tree = ast.parse(open(path, encoding="utf-8").read())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    targets.add(node.module.split(".")[0])
                else:
                    targets.update(alias.name for alias in node.names)
        graph[name] = targets - {name}
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_find_cycle_finds_a_hand_made_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_processing_has_no_import_cycle():
    graph = imports_within(os.path.join(PACKAGE, "processing"))
    assert "provider" in graph and "settings" in graph["base"]
    assert find_cycle(graph) is None, find_cycle(graph)


def test_core_never_imports_qgis():
    for path in modules(os.path.join(PACKAGE, "core")):
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] in ("qgis", "processing") for n in names), path
