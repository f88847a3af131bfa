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
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "flows", "tasks"})
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
