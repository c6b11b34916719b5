"""dvc.yaml's code deps are exact: every module of the package that a stage imports (directly or
through other modules, at the top or inside a function) is covered by one of its deps, so editing
it reruns the stage. Derived from the source (AST), not from a hand-kept list."""
import ast
from pathlib import Path

import pytest
import yaml

from rsmoe.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rsmoe"
# Plumbing that cannot change what a stage writes: the command line that dispatches to the
# stage, the stage registry, and the exception types. Everything else a stage imports is a dep.
# how files are written and errors worded, not what a stage computes
PLUMBING = {"rsmoe/__init__.py", "rsmoe/cli.py", "rsmoe/__main__.py", "rsmoe/stages/__init__.py", "rsmoe/errors.py",
            "rsmoe/files.py"}


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for candidate in (REPO / rel.with_suffix(".py"), REPO / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Package modules imported anywhere in `path` (`from pkg import sub` counts `pkg.sub`)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "rsmoe"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rsmoe" \
                and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return out


def imported_files(module: str) -> set[str]:
    """Every package file `module` needs at run time: its imports, theirs, and the packages'
    `__init__.py` on the way (importing rsmoe.a.b runs rsmoe/a/__init__.py)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:i]))
            if path is None:
                continue
            rel = path.relative_to(REPO).as_posix()
            if rel not in seen:
                seen.add(rel)
                if rel not in PLUMBING:
                    todo += sorted(_imports(path))
    return seen


def _docstring_only(path: Path) -> bool:
    """A package `__init__.py` with nothing but a docstring (and __future__ imports) runs no code."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(getattr(n, "value", None), ast.Constant)
               or isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in body)


def test_the_analysis_follows_function_level_and_lazy_imports():
    files = imported_files("rsmoe.stages.stage1")
    assert "rsmoe/model/rsmoe.py" in files  # via rsmoe.model's lazy __getattr__ import
    assert "rsmoe/training/loop.py" in files and "rsmoe/params.py" in files


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_every_module_it_imports(stage):
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    assert spec["cmd"] == f"rsmoe stage {stage}"
    deps = [d for d in spec["deps"] if d.startswith("rsmoe/")]

    def covered(rel: str) -> bool:
        return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)

    missing = sorted(f for f in imported_files(f"rsmoe.stages.{stage}") - PLUMBING
                     if not covered(f) and not _docstring_only(REPO / f))
    assert not missing, f"dvc.yaml stage {stage!r} imports these files but does not list them in deps: {missing}"
