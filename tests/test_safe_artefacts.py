"""Safe artefacts (issue 7): a full tiny pipeline run writes only safetensors, JSON, JSONL, text and PNG files —
no pickle anywhere — and the package never calls `torch.load` without `weights_only=True` nor enables remote code
by default."""
import os, re, subprocess, sys, zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {".safetensors", ".json", ".jsonl", ".md", ".png", ".txt", ".jinja"}


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


def test_source_uses_safe_loading():
    src = {p.name: p.read_text() for p in (ROOT/"sft_reverse_nb").glob("*.py")}
    for name, text in src.items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{name}: {call}"
        assert not re.search(r"trust_remote_code\s*=\s*True", text), f"{name} enables remote code by default"
        assert "import pickle" not in text and "pickle.load" not in text, name
