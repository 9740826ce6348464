"""The layers of mtrl/ (docs/ARCHITECTURE.md, "Layers"): each imports only the core and the
layers before it; inference does not import the training loop (mtrl.load, mtrl eval,
exports, teachers and mtrl single-task build their agents with mtrl.builders)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

MTRL = Path(__file__).resolve().parent.parent / "mtrl"
# A layer may import the core and any layer with a smaller rank; inference and analysis
# share a rank, so neither imports the other.
RANK = {"core": 0, "networks": 1, "learner": 2, "training": 3, "inference": 4, "analysis": 4, "sweeps": 5}
WIRING = {"mtrl.cli", "mtrl.builders", "mtrl.sb3"}  # the front doors: may import any layer

INFERENCE = [
    "mtrl.inference.policy",
    "mtrl.inference.evaluate_run",
    "mtrl.inference.export",
    "mtrl.learner.distillation",
    "mtrl.sweeps.single_task",
    "mtrl.builders",
]


def test_inference_modules_do_not_import_the_trainer():
    code = f"import sys\nfor m in {INFERENCE!r}: __import__(m)\nprint('mtrl.training.trainer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in RANK else "core"


def mtrl_imports(path: Path) -> set[str]:
    """The mtrl modules a file imports (agents/envs and the wiring modules left out)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtrl"):
            found |= {
                f"{node.module}.{a.name}" if node.module in ("mtrl", *(f"mtrl.{k}" for k in RANK)) else node.module
                for a in node.names
            }
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mtrl.")}
    return {m for m in found if not m.startswith(("mtrl.agents", "mtrl.envs")) and m not in WIRING}


def test_each_layer_imports_only_the_core_and_the_layers_before_it():
    wrong = []
    for path in MTRL.rglob("*.py"):
        module = "mtrl." + ".".join(path.relative_to(MTRL).with_suffix("").parts)
        if module in WIRING or path.name == "__init__.py":
            continue
        own = layer(module)
        for imported in mtrl_imports(path):
            other = layer(imported)
            if other != own and other != "core" and RANK[other] >= RANK[own]:
                wrong.append(f"{module} ({own}) imports {imported} ({other})")
    assert not wrong, wrong
