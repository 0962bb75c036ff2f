"""DVC reruns a stage only when a listed dependency changed, so every repository file a stage's
command imports must be covered by the stage's `deps` (the file itself or a folder above it).

For every stage whose command is `python -m <module> ...`, the import closure is computed from the
source with `ast` (imports inside functions count: they run when the stage runs), following only
the repository's own packages. Stages come from DVC itself, so templated paths are resolved the way
`dvc repro` resolves them.
"""
import ast
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("rgsyn", "flows", "tasks")


def module_file(name: str) -> Path | None:
    """Repository file of a dotted module name (package -> its __init__.py), None if not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def imported_modules(path: Path, name: str) -> set[str]:
    """Dotted names a module imports, with every parent package (importing a.b.c runs a and a.b)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    closed = set()
    for mod in found:
        parts = mod.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return closed


def closure(module: str) -> set[Path]:
    todo, seen = [module], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name)
        seen[name] = path
        if path is not None:
            todo.extend(imported_modules(path, name) - set(seen))
    return {p for p in seen.values() if p is not None}


def python_stages():
    from dvc.repo import Repo

    out = []
    for stage in Repo(str(ROOT)).index.stages:
        words = shlex.split(stage.cmd if isinstance(stage.cmd, str) else stage.cmd[0])
        if words[:2] == ["python", "-m"]:
            deps = [Path(d.def_path) for d in stage.deps if type(d).__name__ == "Dependency"]
            out.append((stage.addressing, words[2], Path(stage.wdir), deps))
    return out


STAGES = python_stages()


def test_every_python_stage_is_checked():
    assert {"data", "reference", "coldstart", "rl", "synthesize", "downstream", "report"} <= {s[0] for s in STAGES}


@pytest.mark.parametrize("stage,module,wdir,deps", STAGES, ids=[s[0] for s in STAGES])
def test_stage_deps_cover_its_import_closure(stage, module, wdir, deps):
    covered = [(wdir / d).resolve() for d in deps]
    files = closure(module)
    assert module_file(module) in files
    missing = sorted(str(f.relative_to(ROOT)) for f in files
                     if not any(f == c or c in f.parents for c in covered))
    assert not missing, f"dvc.yaml stage `{stage}` imports {missing} but does not list them (or a folder " \
                        "above them) in its deps; add them so `dvc repro` reruns the stage when they change"


def test_closure_follows_lazy_and_relative_imports(tmp_path):
    """The closure walker itself, on the data layer (relative imports) and a lazy import."""
    files = {str(f.relative_to(ROOT)) for f in closure("rgsyn.data.layouts")}
    assert {"rgsyn/data/layouts.py", "rgsyn/data/market1501.py", "rgsyn/data/cuhk03np.py",
            "rgsyn/data/records.py", "rgsyn/data/__init__.py", "rgsyn/__init__.py"} <= files


@pytest.mark.parametrize("variant", ["face", "gpu"])
def test_pipeline_variant_mirrors_the_root_stages(variant):
    import importlib.util

    spec = importlib.util.spec_from_file_location("mirror_dvc", ROOT / "scripts/mirror_dvc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / variant / "dvc.yaml").read_text() == mod.mirror(variant), \
        f"{variant}/dvc.yaml is stale: run `python scripts/mirror_dvc.py {variant}` after editing dvc.yaml"
