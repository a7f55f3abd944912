"""Safe artefacts (issue 7): a full tiny pipeline run writes only safetensors, JSON, JSONL, text and PNG files —
no pickle anywhere — and the package never calls `torch.load` without `weights_only=True` nor enables remote code
by default."""
import ast, os, subprocess, sys, zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {".safetensors", ".json", ".jsonl", ".md", ".png", ".txt", ".jinja", ".html"}   # .html: the self-contained run report (13_report)


def _is_pickle(path: Path) -> bool:
    head = path.read_bytes()[:4]
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"): return True      # raw pickle protocol 2-5
    if head[:2] == b"PK":                                                                          # torch.save's zip format
        with zipfile.ZipFile(path) as z: return any(n.endswith(".pkl") for n in z.namelist())
    return False


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("safe")/"run"
    env = {**os.environ, "SFTR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["sftr", "run", "--preset", "tiny", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(["sftr", "eval", str(out), "--ablations", "--mask-only", "kl", "--n", "4"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_every_stage_wrote_its_artefacts(tiny_run):
    for f in ("config.json", "sft/model.safetensors", "sft/complete.json", "lcdd/carrier.safetensors", "lcdd/carrier.json",
              "lcdd/metrics.jsonl", "trigger/trigger.safetensors", "trigger/trigger.json", "trigger/peft/adapter_model.safetensors",
              "eval/results.json", "eval/report.md", "eval/ablations.json", "ablations/mask_only_kl/carrier.safetensors"):
        assert (tiny_run/f).exists(), f


def test_no_pickle_anywhere(tiny_run):
    files = [p for p in tiny_run.rglob("*") if p.is_file()]
    assert len(files) > 30
    odd = sorted(str(p.relative_to(tiny_run)) for p in files if p.suffix not in ALLOWED)
    assert not odd, f"unexpected artefact types: {odd}"
    pickles = [str(p.relative_to(tiny_run)) for p in files if _is_pickle(p)]
    assert not pickles, pickles


def test_every_file_has_the_same_permissions(tiny_run):
    "sft, lcdd, trigger (with its PEFT adapter), eval: every file gets what open() gives under the umask (no 0600 model.safetensors)."
    files = [p for p in tiny_run.rglob("*") if p.is_file()]
    for stage in ("sft", "lcdd", "trigger", "eval"): assert any(p.parent.name == stage for p in files), stage
    umask = os.umask(0); os.umask(umask)
    odd = sorted(f"{p.relative_to(tiny_run)}: {oct(p.stat().st_mode & 0o777)}" for p in files if p.stat().st_mode & 0o777 != 0o666 & ~umask)
    assert not odd, f"expected {oct(0o666 & ~umask)} everywhere: {odd}"


def unsafe_calls(source: str) -> list[str]:
    "What the package must not do, found in its syntax tree: import pickle (or cPickle/dill/joblib), call `torch.load` without a literal "
    "`weights_only=True`, or pass a literal `trust_remote_code=True` to anything."
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("pickle", "cPickle", "dill", "joblib"):
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            kw = {k.arg: k.value for k in node.keywords}
            if name == "load" and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "torch":
                w = kw.get("weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True): found.append(f"line {node.lineno}: torch.load without weights_only=True")
            t = kw.get("trust_remote_code")
            if isinstance(t, ast.Constant) and t.value is True: found.append(f"line {node.lineno}: {name}(trust_remote_code=True)")
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "trust_remote_code" and isinstance(v, ast.Constant) and v.value is True:
                    found.append(f"line {node.lineno}: {{'trust_remote_code': True}}")
    return found


def test_unsafe_call_scanner_catches_what_it_should():
    bad = """import pickle
from dill import loads
import torch
torch.load(f)
torch.load(f, weights_only=False)
AutoModel.from_pretrained(p, trust_remote_code=True)
kw = {"trust_remote_code": True}
"""
    assert len(unsafe_calls(bad)) == 6, unsafe_calls(bad)
    ok = """import torch
torch.load(f, weights_only=True)
AutoModel.from_pretrained(p, trust_remote_code=args.trust_remote_code)
s = "torch.load(f) and import pickle in a string are not calls"
"""
    assert unsafe_calls(ok) == [], unsafe_calls(ok)


def test_source_uses_safe_loading():
    files = sorted((ROOT/"sft_reverse_nb").glob("*.py"))
    assert len(files) > 10
    found = {p.name: unsafe_calls(p.read_text()) for p in files}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
