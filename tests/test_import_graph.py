"""sglp's import graph has no circle: every `import` / `from ... import` of an sglp module, at module level or inside
a function, is an edge; registries import none of their registrants (those are found by name, like entry points)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the sglp modules it imports (a `from pkg import name` counts as pkg.name when that is a module)."""
    modules = {module_name(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    graph[name] |= {target} if target in modules else ({base} if base in modules else set())
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_known_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_sglp_has_no_import_circle():
    assert cycles(import_graph(ROOT / "sglp")) == []


# The layers, lowest first (docs/architecture.md): a module imports only from its own layer or the ones below.
LAYERS = ("core", "data", "kinds", "methods", "experiment")


def layer_of(module: str) -> int:
    """The index of the module's layer in LAYERS; the package's top level (sglp, sglp.api) sits above them all."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, bs in graph.items() for b in bs if layer_of(b) > layer_of(a))


def test_the_upward_finder_finds_a_known_upward_import():
    graph = {"sglp.core.units": {"sglp.methods.search"}, "sglp.methods.search": {"sglp.core.units"}, "sglp.api": set()}
    assert upward_imports(graph) == [("sglp.core.units", "sglp.methods.search")]


def test_every_module_lives_in_a_layer_and_nothing_imports_upwards():
    graph = import_graph(ROOT / "sglp")
    outside = [m for m in graph if layer_of(m) == len(LAYERS) and m not in ("sglp", "sglp.api")]
    assert outside == [], "put the module in one of the layers: " + ", ".join(LAYERS)
    assert upward_imports(graph) == []
