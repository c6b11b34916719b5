"""The package's imports point one way. Read from the source (AST), every import counted,
function-level ones included; only `if TYPE_CHECKING:` blocks (annotations) are left out.

Layers, lowest first: a module imports from its own layer or lower ones, never higher.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rsmoe"

LAYERS = [
    ["rsmoe.errors", "rsmoe.files"],  # import nothing from the package
    ["rsmoe.params"],
    ["rsmoe.data"],  # formats, records, the synthetic corpus, preparation
    ["rsmoe.model"],
    ["rsmoe.training"],
    ["rsmoe.evaluation", "rsmoe.export"],
    ["rsmoe.inference"],
    ["rsmoe.stages"],
    ["rsmoe.cli", "rsmoe.__main__", "rsmoe.orchestration", "rsmoe"],
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} within the package."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for module, path in modules.items():
        found = out.setdefault(module, set())
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rsmoe":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add((sub, None) if sub in modules else (node.module, alias.name))
            elif isinstance(node, ast.Import):
                found.update((a.name, None) for a in node.names if a.name.split(".")[0] == "rsmoe")
    return out


def _layer(module: str) -> int:
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > best[1]):
                best = (i, len(name))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def test_no_module_imports_a_higher_layer():
    upward = [f"{m} -> {target} (layer {_layer(target)} > {_layer(m)})"
              for m, imports in _imports(_modules()).items() for target, _ in imports
              if target != "rsmoe" and _layer(target) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_errors_imports_nothing_from_the_package():
    assert not _imports(_modules())["rsmoe.errors"]


def test_no_private_name_is_imported_from_another_module():
    private = [f"{m}: {name} from {target}" for m, imports in _imports(_modules()).items()
               for target, name in imports if name and name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


def test_no_import_cycle():
    modules = _modules()
    graph = {m: {t for t, _ in imports if t in modules and t != m} for m, imports in _imports(modules).items()}
    # a package's __init__ re-exports its own modules: the edge package -> its module is the
    # package being assembled, not a dependency of the package's modules on it
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_what_they_check():
    """The checks find real imports: a known edge of each kind is seen."""
    imports = _imports(_modules())
    assert ("rsmoe.data.records", None) in imports["rsmoe.data.report"] or \
        ("rsmoe.data.records", "QA_TYPES") in imports["rsmoe.data.report"]
    assert any(t.startswith("rsmoe.stages") for t, _ in imports["rsmoe.cli"])  # a function-level import
    assert not any(t == "rsmoe.data.synth.canvas" for t, _ in imports["rsmoe.data.synth.painters"])  # TYPE_CHECKING
    assert _layer("rsmoe.data.synth.themes") == 2 and _layer("rsmoe.cli") == 8
