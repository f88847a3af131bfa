"""The library's import rules (ARCHITECTURE.md): nofrog_core never loads the orchestrator."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import nofrog_core
names = [m.name for m in pkgutil.walk_packages(nofrog_core.__path__, "nofrog_core.")]
for name in names:
    importlib.import_module(name)
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "flows", "tasks", "nofrog_flows", "nofrog_tasks"})
print(json.dumps({"modules": len(names), "loaded": loaded}))
"""


def test_no_library_module_loads_prefect_flows_or_tasks():
    # A fresh interpreter: this test process has Prefect loaded already (conftest imports flows).
    out = subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["modules"] > 30  # every module was imported, not a handful
    assert seen["loaded"] == [], f"nofrog_core loaded {seen['loaded']}"


LIBRARY = ROOT / "nofrog_core"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a library file imports (relative imports resolved)."""
    import ast

    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_training_and_evaluation_never_import_each_other():
    for side, other in (("train", "evaluate"), ("evaluate", "train")):
        for path in (LIBRARY / side).rglob("*.py"):
            bad = {m for m in imported_modules(path) if m.startswith(f"nofrog_core.{other}")}
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: share a component instead"


COMPONENTS = ["losses.py", "scoring.py", "corpus.py", "schedules.py", "gate.py", "train/hooks.py",
              "train/monitor.py", "train/objective.py", "evaluate/report.py", "evaluate/metrics.py",
              *[str(p.relative_to(LIBRARY)) for p in (LIBRARY / "train" / "terms").glob("*.py")]]


def test_components_take_plain_values_not_the_config():
    import ast

    for name in COMPONENTS:
        tree = ast.parse((LIBRARY / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = [a.arg for a in node.args.args + node.args.kwonlyargs]
                bad = [p for p in params if p == "config" or p.endswith("_config")]
                assert not bad, f"nofrog_core/{name}: {node.name}({', '.join(bad)}): components take plain values"
