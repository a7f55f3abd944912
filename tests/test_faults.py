"""Faults: `sftr sft` / `sftr lcdd` killed with SIGKILL after a checkpoint and rerun end with the artefacts of an uninterrupted run
(bit for bit on CPU), and a run that died between writing its model and `complete.json` is never taken for a finished one."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SFT = ["--preset", "tiny", "--steps", "60", "--save-every", "10"]
LCDD = ["--steps", "60", "--save-every", "10"]
ERASE = ["--steps", "200", "--save-every", "10"]


SFTR = str(Path(sys.executable).with_name("sftr")) if Path(sys.executable).with_name("sftr").exists() else "sftr"


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "SFTR_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}


def sftr(*args):
    r = subprocess.run([SFTR, *map(str, args)], capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def kill_after_checkpoint(stage_dir: Path, *args) -> int:
    "Start `sftr ARGS`, SIGKILL it as soon as `stage_dir/train_state/state.json` exists; returns the checkpointed step."
    p = subprocess.Popen([SFTR, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    state, deadline = stage_dir / "train_state" / "state.json", time.time() + 120
    while not state.exists():
        assert p.poll() is None, f"sftr ended before its first checkpoint: {p.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (stage_dir / "complete.json").exists()
    if not state.exists(): state = stage_dir / ".train_state.previous" / "state.json"   # the kill fell between a later checkpoint's two renames
    return json.loads(state.read_text())["step"]


def plant_debris(stage_dir: Path):
    "What a SIGKILL can leave: a half-written temporary of each atomic writer, a half-moved checkpoint, a torn metrics line, a training state moved aside."
    state, prev = stage_dir / "train_state", stage_dir / ".train_state.previous"
    if state.exists():                  # the kill may have fallen after a later checkpoint's renames, before the old state was deleted
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(state, prev)         # killed between atomic_dir's two renames: the state is whole, under another name
    (stage_dir / ".train_state.x1y2.tmp").mkdir()
    (stage_dir / ".train_state.x1y2.tmp" / "state.json").write_text('{"format": "sft_reverse_nb.train')
    (stage_dir / ".model.safetensors.abcd.tmp").write_bytes(b"\0" * 10)
    (stage_dir / ".checkpoint").mkdir(exist_ok=True)
    with open(stage_dir / "metrics.jsonl", "a") as f: f.write('{"step": 99, "loss": 0.1')


def tensors_equal(a: Path, b: Path):
    ta, tb = load_file(str(a)), load_file(str(b))
    assert sorted(ta) == sorted(tb), (a, b)
    for k in ta: assert torch.equal(ta[k], tb[k]), f"{a.name}: {k} differs"


def metrics(d: Path):
    "The metrics log without its wall-clock timings."
    return [{k: v for k, v in json.loads(l).items() if k != "sec"} for l in (d / "metrics.jsonl").read_text().splitlines()]


def completion(d: Path):
    "complete.json without its time and file hashes (the JSON files name the run's own paths; the tensors are compared bit for bit)."
    return {k: v for k, v in json.loads((d / "complete.json").read_text()).items() if k not in ("finished_at", "fingerprint", "files")}


def same_stage(ref: Path, run: Path, tensor_files):
    for f in tensor_files: tensors_equal(ref / f, run / f)
    assert metrics(ref) == metrics(run)
    assert completion(ref) == completion(run)
    left = sorted(p.name for p in run.iterdir() if p.name.startswith("."))
    assert not left, f"temporaries left behind: {left}"
    assert sorted(p.name for p in ref.iterdir()) == sorted(p.name for p in run.iterdir())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    "An uninterrupted tiny run: SFT, LCDD, then the trigger."
    ref = tmp_path_factory.mktemp("faults") / "ref"
    sftr("sft", ref, *SFT)
    sftr("lcdd", ref, *LCDD)
    sftr("erase", ref, *ERASE)
    return ref


def killed_and_rerun(reference, tmp_path, cmd: str, out: str, args: list, total: int, earlier=()) -> Path:
    "Copy the finished `earlier` stages, SIGKILL `sftr cmd` after its first checkpoint, leave debris, rerun it; the run directory."
    run = tmp_path / "run"
    for d in earlier: shutil.copytree(reference / d, run / d)
    if earlier: shutil.copy(reference / "config.json", run / "config.json")
    step = kill_after_checkpoint(run / out, cmd, run, *args)
    assert 10 <= step < total
    plant_debris(run / out)
    r = sftr(cmd, run, *args)
    assert f"{cmd}: resuming from step {step}/{total}" in r.stdout
    return run


def test_sft_killed_and_rerun_equals_uninterrupted(reference, tmp_path):
    run = killed_and_rerun(reference, tmp_path, "sft", "sft", SFT, 60)
    same_stage(reference / "sft", run / "sft", ["model.safetensors"])


def test_lcdd_killed_and_rerun_equals_uninterrupted(reference, tmp_path):
    run = killed_and_rerun(reference, tmp_path, "lcdd", "lcdd", LCDD, 60, earlier=("sft",))
    same_stage(reference / "lcdd", run / "lcdd", ["model.safetensors", "carrier.safetensors", "train_state/state.safetensors"])
    assert json.loads((reference / "lcdd" / "carrier.json").read_text()) == json.loads((run / "lcdd" / "carrier.json").read_text())


def test_erase_killed_and_rerun_equals_uninterrupted(reference, tmp_path):
    run = killed_and_rerun(reference, tmp_path, "erase", "trigger", ERASE, 200, earlier=("sft", "lcdd"))
    same_stage(reference / "trigger", run / "trigger",
               ["trigger.safetensors", "train_state/state.safetensors", "peft/adapter_model.safetensors"])
    tj = lambda d: {k: v for k, v in json.loads((d / "trigger" / "trigger.json").read_text()).items() if k not in ("model", "carrier")}  # paths
    assert tj(reference) == tj(run)


def _die(*a, **k):
    raise SystemExit("simulated death between the model and complete.json")


@pytest.fixture
def one_thread():
    "In-process training with the subprocesses' thread count (float sums are only bit-exact with the same reduction order)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_crash_before_complete_json_is_detected_and_rerun(reference, tmp_path, monkeypatch, one_thread):
    from sft_reverse_nb import train as train_mod
    from sft_reverse_nb.carrier import Carrier
    from sft_reverse_nb.pipeline import lcdd_stage, run_config, sft_stage
    from sft_reverse_nb.provenance import is_complete, StageLock
    from sft_reverse_nb.cli import build_parser, overrides_from_args
    os.environ["SFTR_NO_PROGRESS"] = "1"
    run = tmp_path / "run"
    cfg = run_config(run, "tiny", None, overrides_from_args(build_parser().parse_args(["sft", str(run), *SFT]), "sft"))
    # SFT dies after writing model.safetensors, before complete.json
    with monkeypatch.context() as m:
        m.setattr(train_mod, "mark_complete", _die)      # the loop writes complete.json last
        with pytest.raises(SystemExit): sft_stage(run, cfg)
    StageLock(run / "sft").release()                        # what the dead process's exit does (this one lives on)
    assert (run / "sft" / "model.safetensors").exists() and not is_complete(run / "sft")
    r = subprocess.run([SFTR, "lcdd", str(run)], capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and "is not a completed SFT run" in r.stderr and f"sftr sft {run}" in r.stderr
    sftr("sft", run, *SFT)                                  # reruns the steps after the last checkpoint
    tensors_equal(reference / "sft" / "model.safetensors", run / "sft" / "model.safetensors")
    assert metrics(reference / "sft") == metrics(run / "sft")

    # LCDD dies after the merged model and the carrier, before complete.json
    cfg = run_config(run, None, None, overrides_from_args(build_parser().parse_args(["lcdd", str(run), *LCDD]), "lcdd"))
    with monkeypatch.context() as m:
        m.setattr(train_mod, "mark_complete", _die)
        with pytest.raises(SystemExit): lcdd_stage(run, cfg)
    StageLock(run / "lcdd").release()
    assert (run / "lcdd" / "carrier.safetensors").exists() and not is_complete(run / "lcdd")
    from sft_reverse_nb.arch import tiny_model
    with pytest.raises(ValueError, match="is not a completed LCDD run.*rerun `sftr lcdd`"):
        Carrier.load_run(run / "lcdd", tiny_model("llama"), tiny_model("llama"))
    r = sftr("lcdd", run, *LCDD)
    assert "resuming from step 60/60" in r.stdout
    same_stage(reference / "lcdd", run / "lcdd", ["model.safetensors", "carrier.safetensors", "train_state/state.safetensors"])
