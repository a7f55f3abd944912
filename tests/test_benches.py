"""The benchmark scripts are not run by CI (they need an idle machine and the real model), so their imports are
checked here: every name a bench imports from the package exists, and every script answers --help."""
import ast, importlib, subprocess, sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1]/"bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def package_imports(path: Path) -> list[tuple[str, str]]:
    "(module, name) for every `from sft_reverse_nb.X import name` in the script, at any depth (benches import lazily)."
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sft_reverse_nb"):
            out += [(node.module, a.name) for a in node.names]
    return out


def test_benches_found():
    assert {"lcdd_step.py", "trigger_step.py", "contention.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_imports_exist(script):
    missing = [f"{m}.{n}" for m, n in package_imports(script) if not hasattr(importlib.import_module(m), n)]
    assert not missing, f"{script.name} imports names the package does not have: {missing}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_help(script):
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=BENCH.parent, timeout=300)
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr[-2000:]
