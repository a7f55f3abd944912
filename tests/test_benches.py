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


def top_level_imports(path: Path) -> list[str]:
    "Top-level package names a script imports at module level, in order."
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import): out += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level: out.append(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_loads_package_before_torch(script):
    "A bench times what `sftr` runs: the package's OpenMP and allocator settings (02b_threads) act only when it is imported before torch."
    order = top_level_imports(script)
    for heavy in ("torch", "transformers"):
        if heavy in order:
            assert "sft_reverse_nb" in order and order.index("sft_reverse_nb") < order.index(heavy), \
                f"{script.name} imports {heavy} before sft_reverse_nb; put `import sft_reverse_nb` first"


def test_import_order_check_can_fail(tmp_path):
    bad = tmp_path/"bad.py"; bad.write_text("import torch\nimport sft_reverse_nb\n")
    good = tmp_path/"good.py"; good.write_text("import argparse\nimport sft_reverse_nb\nimport torch\nfrom sft_reverse_nb.arch import load_model\n")
    assert top_level_imports(bad) == ["torch", "sft_reverse_nb"]
    with pytest.raises(AssertionError, match="imports torch before sft_reverse_nb"): test_bench_loads_package_before_torch(bad)
    test_bench_loads_package_before_torch(good)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_help(script):
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=BENCH.parent, timeout=300)
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr[-2000:]


def test_trigger_dev_file_split_holds_out_what_eval_reads(tmp_path):
    "`trigger_dev.py --prompt-file`: the split avoids the task's prompts, the evaluation's reference pairs and the instructions of the style judge's ordinary answers."
    import json
    from sft_reverse_nb.data import TaskData
    from sft_reverse_nb.evaluation import EvalConfig
    from sft_reverse_nb.judges import reference_split
    from sft_reverse_nb.pipeline import reference_sets
    sys.path.insert(0, str(BENCH))
    try: import trigger_dev
    finally: sys.path.remove(str(BENCH))
    rows = [{"instruction": f"q{i}", "input": "ctx" if i % 7 == 0 else "", "output": f"a{i}"} for i in range(2600)]
    f = tmp_path/"alpaca.json"; f.write_text(json.dumps(rows))
    task = TaskData("shakespeare", [("q1", "x"), ("q2", "y")], ["q3", "q4"], "test")
    vcfg = EvalConfig.from_dict({"references": str(f), "n_references": 50})
    refs = reference_sets(task, vcfg)
    dev = trigger_dev.file_split(task, refs, f, 1234, 100)
    held, ordinary = reference_split(f, 50, 2000, {"q1", "q2", "q3", "q4"}, vcfg.seed)
    ordinary_q = {f"q{a[1:]}" for a in ordinary}
    assert len(dev) == len(set(dev)) == 100
    assert not set(dev) & ({"q1", "q2", "q3", "q4"} | {q for q, _ in held} | ordinary_q)
    assert not {q for q in dev if int(q[1:]) % 7 == 0}                       # rows with an input are not instructions on their own
    assert dev == trigger_dev.file_split(task, refs, f, 1234, 100) != trigger_dev.file_split(task, refs, f, 99, 100)
    with pytest.raises(SystemExit, match="lower --n"): trigger_dev.file_split(task, refs, f, 1234, 10_000)
    pairs = trigger_dev.file_answers(f, dev)                                 # --nll's references: the file's own answers
    assert [q for q, _ in pairs] == dev and all(a == f"a{q[1:]}" for q, a in pairs)
    rows[5]["output"] = ""; f.write_text(json.dumps(rows))                    # an instruction without an answer is no reference
    assert trigger_dev.file_answers(f, ["q5", "q6"]) == [("q6", "a6")]
    with pytest.raises(SystemExit, match="not input-free"): trigger_dev.file_answers(f, ["q7"])   # q7 has an input
