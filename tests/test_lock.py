"""One writer per run directory (issue 15, §4), with real processes: a second `sftr lcdd` on a run whose LCDD stage is being
trained stops at once (exit status 2, one line naming the holder and the lock file) and the first finishes with a clean
metrics log; a lock left by a killed process is taken over by the next run, which resumes and completes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "SFTR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def sftr(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "sft_reverse_nb.cli", *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=ROOT, **kw)


def wait_for(cond, proc, timeout=120, what=""):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None: pytest.fail(f"the first process ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout: proc.kill(); pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    "A tiny run with a finished SFT stage."
    run = tmp_path_factory.mktemp("lock") / "run"
    p = sftr("sft", run, "--preset", "tiny", "--steps", "3")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    return run


def steps_logged(run: Path) -> list[int]:
    return [json.loads(l)["step"] for l in (run / "lcdd" / "metrics.jsonl").read_text().splitlines() if l.strip()]


def expected_steps(run: Path) -> list[int]:
    "One record per logged step: every `log_every`-th step and the last."
    cfg, done = json.loads((run / "config.json").read_text())["lcdd"], json.loads((run / "lcdd" / "complete.json").read_text())
    k, n = cfg["log_every"], done["steps"]
    return sorted({s for s in range(1, n + 1) if s % k == 0} | {n})


def test_second_writer_stops_at_once(sft_run, tmp_path):
    import shutil
    run = tmp_path / "run"; shutil.copytree(sft_run, run)
    lock = run / "lcdd" / ".lock"
    first = sftr("lcdd", run, "--steps", "400")
    wait_for(lock.exists, first, what="the first process's lock")
    holder = json.loads(lock.read_text())
    assert holder["pid"] == first.pid and "lcdd" in holder["command"], holder
    t0 = time.time()
    second = sftr("lcdd", run, "--steps", "400")
    out, err = second.communicate(timeout=120)
    took = time.time() - t0
    assert first.poll() is None, "the first process finished before the second was refused: make its run longer"
    assert second.returncode == 2, (second.returncode, err[-2000:])
    lines = [l for l in err.splitlines() if "error" in l.lower()]               # (transformers' loading bars also go to stderr)
    assert len(lines) == 1, err
    assert lines[0].startswith("sftr lcdd: error: ") and f"lock file {lock}" in lines[0] and f"pid {first.pid} on host" in lines[0], lines[0]
    assert took < 60, f"the second process took {took:.0f} s to give up"
    assert lock.exists() and json.loads(lock.read_text())["pid"] == first.pid     # the refused process left the lock alone
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert not lock.exists(), "the lock outlived the stage"
    assert steps_logged(run) == expected_steps(run)                               # exactly one record per logged step


def test_stale_lock_of_a_killed_writer_is_taken_over(sft_run, tmp_path):
    import shutil
    run = tmp_path / "run"; shutil.copytree(sft_run, run)
    lock, metrics = run / "lcdd" / ".lock", run / "lcdd" / "metrics.jsonl"
    first = sftr("lcdd", run, "--steps", "100")           # the tiny preset saves every 40 steps
    state = run / "lcdd" / "train_state" / "state.json"                # written in the background: on disk a little after step 40
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 45 and state.exists(), first,
             what="45 logged steps and the step-40 checkpoint on disk")
    first.send_signal(signal.SIGKILL); first.communicate()
    assert json.loads(lock.read_text())["pid"] == first.pid                       # a killed process cannot release its lock
    again = sftr("lcdd", run, "--steps", "100")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert f"taking over a stale lock (pid {first.pid} on host" in out, out
    assert "resuming from step 40/100" in out, out
    assert not lock.exists()
    assert steps_logged(run) == expected_steps(run)


def test_eval_holds_a_lock_on_its_output(sft_run, tmp_path):
    "`sftr eval` refuses an output directory another live process holds."
    import shutil
    run = tmp_path / "run"; shutil.copytree(sft_run, run)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / "eval").mkdir()
        (run / "eval" / ".lock").write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "started": "now", "command": "sftr eval"}))
        p = sftr("eval", run, "--conditions", "sft", "--no-kl", "--utility", "none", "--n", "2")
        out, err = p.communicate(timeout=300)
        assert p.returncode == 2 and f"lock file {run / 'eval' / '.lock'}" in err and f"pid {holder.pid}" in err, err[-2000:]
        assert not (run / "eval" / "results.json").exists()
    finally:
        holder.kill(); holder.wait()
