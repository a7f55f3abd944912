"""Run integrity, case by case, with the commands a user types (issue: "Numbers a researcher can trust").

Every case runs `sftr` through `main` (in-process, as the console script does; a few in a real subprocess) and checks three things:
the exit status, a one-line message on stderr that names the problem and the fix (never a traceback), and that the artefacts of the
run are unchanged (sha256 of every file before and after) unless the case is about what a command rightly changes.

The cases are numbered after the sections of the issue: 1 provenance, 2 validation, 3 artefacts checked against their claims,
5 what a run may do. (4, one writer per run, has its own two-process test file.)"""
import hashlib
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

from sft_reverse_nb.cli import main

os.environ["SFTR_NO_PROGRESS"] = "1"


def sftr(capsys, *argv) -> tuple[int, str]:
    "Run `sftr ARGV` as the console script would; returns (exit status, stderr)."
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line_error(err: str, cmd: str, *needles: str):
    "The command's own output on stderr is a single `sftr CMD: error: ...` line containing every needle, with no traceback (library progress bars aside)."
    lines = [l for l in err.splitlines() if l.startswith("sftr ")]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert lines[0].startswith(f"sftr {cmd}: error: "), lines[0]
    assert "Traceback" not in err
    for n in needles: assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def checksums(run: Path) -> dict:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*")) if p.is_file()}


def results(run: Path, name: str = "eval") -> dict:
    return json.loads((run / name / "results.json").read_text())


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    "A finished tiny run (SFT, LCDD, trigger, evaluation), made once with `sftr run --preset tiny`."
    base = tmp_path_factory.mktemp("integrity")
    run = base / "R"
    assert main(["run", "--preset", "tiny", "--out", str(run)]) == 0
    return run


@pytest.fixture
def run(done, tmp_path):
    "A private copy of the finished run for a case to change."
    r = tmp_path / "R"
    shutil.copytree(done, r)
    return r


def other_sft(run: Path, out: Path) -> Path:
    "An SFT checkpoint of the same shapes as the run's, with other weights (what `--sft OTHER` points at)."
    from sft_reverse_nb.arch import load_model
    from sft_reverse_nb.carrier import perturbed_copy
    perturbed_copy(load_model(str(run / "sft")), scale=0.02, seed=5).save_pretrained(out)
    return out


# ---------------------------------------------------------------- 1. provenance instead of stale caches

def test_1_stale_trigger_is_regenerated_not_reused(run, capsys):
    "rm -rf R/trigger && sftr erase R --steps 3 && sftr eval R: the trigger condition is measured on the new trigger."
    old = results(run)
    shutil.rmtree(run / "trigger")
    assert sftr(capsys, "erase", run, "--steps", "3")[0] == 0
    assert sftr(capsys, "eval", run)[0] == 0
    new = results(run)
    assert new["provenance"]["trig"]["generations"] == "computed"
    assert new["provenance"]["trig"]["trigger"] != old["provenance"]["trig"]["trigger"]
    assert {n: p["generations"] for n, p in new["provenance"].items() if n != "trig"} == {"base": "reused", "sft": "reused", "lcdd": "reused"}
    shutil.rmtree(run / "eval" / "generations")                      # the same evaluation with no cache at all
    assert sftr(capsys, "eval", run)[0] == 0
    fresh = results(run)
    assert fresh["conditions"]["trig"]["fixed_response_rate"] == new["conditions"]["trig"]["fixed_response_rate"]
    assert fresh["kl"] == new["kl"]
    print(f"@Trig: trained trigger {old['conditions']['trig']['fixed_response_rate']:.3f}, "
          f"3-step trigger {new['conditions']['trig']['fixed_response_rate']:.3f} (no cache: {fresh['conditions']['trig']['fixed_response_rate']:.3f})")


def test_1_retrained_lcdd_is_regenerated_and_old_trigger_refused(run, capsys):
    "rm -rf R/lcdd && sftr lcdd R --steps 3 && sftr eval R: LCDD regenerated; the old trigger belongs to no model of the run."
    shutil.rmtree(run / "lcdd")
    assert sftr(capsys, "lcdd", run, "--steps", "3")[0] == 0
    before = checksums(run)
    code, err = sftr(capsys, "eval", run)
    assert code == 2
    one_line_error(err, "eval", "trigger", "none of this run's models", "rerun `sftr erase")
    assert checksums(run) == before
    assert sftr(capsys, "eval", run, "--conditions", "base", "sft", "lcdd")[0] == 0
    assert results(run)["provenance"]["lcdd"]["generations"] == "computed"


def test_1_lcdd_from_another_sft_breaks_the_chain(run, tmp_path, capsys):
    "sftr lcdd R --sft OTHER (after deleting R/lcdd), then sftr eval R: refused, the chain SFT -> LCDD is broken."
    other_sft(run, tmp_path / "other")
    shutil.rmtree(run / "lcdd"); shutil.rmtree(run / "trigger")
    assert sftr(capsys, "lcdd", run, "--sft", tmp_path / "other", "--steps", "3")[0] == 0
    before = checksums(run)
    code, err = sftr(capsys, "eval", run, "--conditions", "sft", "lcdd")
    assert code == 2
    one_line_error(err, "eval", "chain is broken", "delete", "sftr lcdd")
    assert checksums(run) == before


def test_1_lcdd_resumed_with_another_sft_is_refused(run, tmp_path, capsys):
    "An unfinished LCDD resumed with `sftr lcdd R --sft OTHER` would build a hybrid carrier: refused, nothing changed."
    other_sft(run, tmp_path / "other")
    (run / "lcdd" / "complete.json").unlink()                          # as if LCDD had been killed after its last checkpoint
    before = checksums(run)
    code, err = sftr(capsys, "lcdd", run, "--sft", tmp_path / "other")
    assert code == 2
    one_line_error(err, "lcdd", "was started from other inputs", "sft", "delete")
    assert checksums(run) == before


def test_1_finished_lcdd_reused_only_for_its_own_sft(run, tmp_path, capsys):
    "sftr lcdd R --sft OTHER on a finished LCDD stage: refused instead of returning the carrier of the other SFT model."
    other_sft(run, tmp_path / "other")
    before = checksums(run)
    code, err = sftr(capsys, "lcdd", run, "--sft", tmp_path / "other")
    assert code == 2
    one_line_error(err, "lcdd", "is finished but was made from other inputs", "(sft differ)")
    assert checksums(run) == before


def test_1_sparsity_comes_from_the_gate_tensors(run, capsys):
    "Editing carrier.json cannot change the reported sparsity: the edit is refused; the reported number is the tensors'."
    from safetensors.torch import load_file
    g = load_file(run / "lcdd" / "carrier.safetensors")
    counted = 1 - sum(int((t > 0).sum()) for t in g.values()) / sum(t.numel() for t in g.values())
    assert results(run)["sparsity"] == pytest.approx(counted, abs=1e-12)
    meta = json.loads((run / "lcdd" / "carrier.json").read_text()); meta["sparsity"] = 0.999
    (run / "lcdd" / "carrier.json").write_text(json.dumps(meta))
    before = checksums(run)
    code, err = sftr(capsys, "eval", run)
    assert code == 2
    one_line_error(err, "eval", "carrier.json changed since the stage finished", "delete")
    assert checksums(run) == before


def test_1_a_rerun_with_other_settings_keeps_the_earlier_results(run, capsys):
    "sftr eval R --utility none (then --n 4): the earlier results move to eval/history/, none is lost."
    first = results(run)
    assert "utility" in first
    assert sftr(capsys, "eval", run, "--utility", "none")[0] == 0
    assert sftr(capsys, "eval", run, "--n", "4", "--utility", "none")[0] == 0
    kept = sorted(json.loads(p.read_text())["evaluation_id"] for p in (run / "eval" / "history").glob("*/results.json"))
    now = results(run)
    assert now["n_prompts"] == 4 and "utility" not in now
    assert len(kept) == 2 and first["evaluation_id"] in kept
    assert all((p.parent / "report.md").exists() for p in (run / "eval" / "history").glob("*/results.json"))


# ---------------------------------------------------------------- 2. one validation for every setting, before any work

BAD_STAGE_SETTINGS = [
    (("erase", "--n-tokens", "0"), "erase", "n_tokens must be an integer >= 1, got 0"),
    (("erase", "--k", "0"), "erase", "k must be an integer >= 1"),
    (("erase", "--radius", "0"), "erase", "radius must be a finite number > 0"),
    (("erase", "--alpha", "nan"), "erase", "alpha must be a finite number >= 0"),
    (("erase", "--gamma", "inf"), "erase", "gamma must be a finite number"),
    (("erase", "--lr", "-1"), "erase", "lr must be a finite number > 0"),
    (("erase", "--batch-size", "0"), "erase", "batch_size must be an integer >= 1"),
    (("erase", "--n-prompts", "0"), "erase", "n_prompts must be an integer >= 1"),
    (("eval", "--n", "0"), "eval", "n_prompts must be an integer >= 1"),
    (("eval", "--n", "-1"), "eval", "n_prompts must be an integer >= 1"),
    (("eval", "--max-new-tokens", "0"), "eval", "max_new_tokens must be an integer >= 1"),
    (("eval", "--batch-size", "0"), "eval", "batch_size must be an integer >= 1"),
    (("eval", "--conditions", "sft", "sft"), "eval", "lists a condition twice"),
    (("lcdd", "--rho", "-0.1"), "lcdd", "rho and eps_abs must be >= 0"),
    (("lcdd", "--gate-lr", "0"), "lcdd", "gate_lr must be > 0"),
    (("sft", "--lr", "0"), "sft", "lr must be a positive finite number"),
    (("sft", "--grad-accum", "0"), "sft", "grad_accum must be an integer >= 1"),
]


@pytest.mark.parametrize("argv,cmd,needle", BAD_STAGE_SETTINGS, ids=[" ".join(a) for a, _, _ in BAD_STAGE_SETTINGS])
def test_2_bad_values_refused_before_any_work(run, capsys, argv, cmd, needle):
    before = checksums(run)
    t0 = time.perf_counter()
    code, err = sftr(capsys, argv[0], run, *argv[1:])
    assert code == 2
    one_line_error(err, cmd, needle)
    assert checksums(run) == before
    assert time.perf_counter() - t0 < 30


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj)); return path


def _tiny():
    from sft_reverse_nb.pipeline import get_preset
    return get_preset("tiny")


BAD_RUN_CONFIGS = [
    ("top-level-typo", lambda: {**_tiny(), "modle": "tiny:qwen2"}, "unknown run option(s) ['modle']"),
    ("not-an-object", lambda: [1, 2, 3], "must be a JSON object"),
    ("task-typo", lambda: {**_tiny(), "task": {**_tiny()["task"], "n_trian": 3}}, "unknown fixed_response task option(s) ['n_trian']"),
    ("unknown-task", lambda: {**_tiny(), "task": {"name": "jokes"}}, "task must be an object whose name is one of"),
    ("erase-section-bad", lambda: {**_tiny(), "erase": {"n_tokens": 0}}, "n_tokens must be an integer >= 1"),
    ("eval-section-bad", lambda: {**_tiny(), "eval": {"max_new_tokens": 0}}, "max_new_tokens must be an integer >= 1"),
    ("eval-section-typo", lambda: {**_tiny(), "eval": {"judg": "keyword"}}, "unknown EvalConfig option(s) ['judg']"),
    ("stage-not-object", lambda: {**_tiny(), "lcdd": 5}, "lcdd must be an object"),
    ("trust-remote-code-in-file", lambda: {**_tiny(), "trust_remote_code": True}, "never read from a configuration file"),
]


@pytest.mark.parametrize("name,make,needle", BAD_RUN_CONFIGS, ids=[c[0] for c in BAD_RUN_CONFIGS])
def test_2_whole_run_config_checked_in_the_first_second(tmp_path, capsys, name, make, needle):
    "sftr run --config BAD --out X fails before any stage (no run directory left), whatever section is wrong."
    cfg = _write(tmp_path / "bad.json", make())
    t0 = time.perf_counter()
    code, err = sftr(capsys, "run", "--config", cfg, "--out", tmp_path / "X")
    assert code == 2 and time.perf_counter() - t0 < 10
    one_line_error(err, "run", needle)
    assert not (tmp_path / "X").exists()


def test_2_failed_first_command_leaves_no_config(tmp_path, capsys):
    "sftr sft NEW --preset tiny --model MISSING: the failure leaves no config.json (and no run directory) behind."
    code, err = sftr(capsys, "sft", tmp_path / "NEW", "--preset", "tiny", "--model", tmp_path / "missing")
    assert code == 2
    one_line_error(err, "sft", "missing")
    assert not (tmp_path / "NEW").exists()


def test_2_another_config_for_an_existing_run(run, tmp_path, capsys):
    "sftr run --config B --out EXISTING: refused with the differences; --reconfigure records it only where no finished stage is changed."
    cfg = _write(tmp_path / "B.json", {**_tiny(), "lcdd": {**_tiny()["lcdd"], "rho": 0.5}})
    before = checksums(run)
    code, err = sftr(capsys, "run", "--config", cfg, "--out", run)
    assert code == 2
    one_line_error(err, "run", "configured differently", "lcdd.rho: run has 0.3, asked 0.5", "--reconfigure")
    code, err = sftr(capsys, "run", "--config", cfg, "--out", run, "--reconfigure")
    assert code == 2
    one_line_error(err, "run", "would alter the stage(s) lcdd", f"delete {run / 'lcdd'}")
    assert checksums(run) == before
    cfg = _write(tmp_path / "C.json", {**_tiny(), "eval": {**_tiny()["eval"], "max_new_tokens": 8}})
    assert sftr(capsys, "run", "--config", cfg, "--out", run, "--reconfigure")[0] == 0     # evaluation may change: it is archived
    assert results(run)["max_new_tokens"] == 8 and json.loads((run / "config.json").read_text())["eval"]["max_new_tokens"] == 8


def test_2_stuck_stage_names_the_directory(run, capsys):
    "sftr sft R --steps 7 on a finished SFT stage: the message names the directory to delete, not 'use a new run directory'."
    before = checksums(run)
    code, err = sftr(capsys, "sft", run, "--steps", "7")
    assert code == 2
    one_line_error(err, "sft", f"delete {run / 'sft'}", "sft.steps")
    assert "new run directory" not in err
    assert checksums(run) == before


# ---------------------------------------------------------------- 3. artefacts checked against what they claim

def test_3_trigger_from_another_run_is_refused(run, tmp_path, capsys):
    "A trigger copied in from another tiny run (other SFT seed, same shapes) is not evaluated."
    other = tmp_path / "O"
    assert main(["sft", str(other), "--preset", "tiny", "--seed", "1", "--steps", "5"]) == 0
    assert main(["lcdd", str(other), "--steps", "3"]) == 0
    assert main(["erase", str(other), "--steps", "2"]) == 0
    shutil.rmtree(run / "trigger"); shutil.copytree(other / "trigger", run / "trigger")
    before = checksums(run)
    code, err = sftr(capsys, "eval", run, "--conditions", "lcdd", "trig")
    assert code == 2
    one_line_error(err, "eval", "none of this run's models", "rerun `sftr erase")
    assert checksums(run) == before


def test_3_nan_trigger_is_refused(run, capsys):
    "A trigger with NaN values (recorded as complete) scores nothing: refused as damaged."
    from sft_reverse_nb.eraser import Trigger
    from sft_reverse_nb.provenance import mark_complete
    t = Trigger.load(run / "trigger")
    rec = json.loads((run / "trigger" / "complete.json").read_text())
    Trigger(torch.full_like(t.embeds, float("nan")), t.meta).save(run / "trigger")
    mark_complete(run / "trigger", {"stage": "erase"}, rec["inputs"], rec["weights"])
    before = checksums(run)
    code, err = sftr(capsys, "eval", run, "--conditions", "lcdd", "trig")
    assert code == 2
    one_line_error(err, "eval", "trigger.safetensors", "non-finite values")
    assert checksums(run) == before


def test_3_damaged_model_file(run, capsys):
    "A truncated R/sft/model.safetensors: LCDD refuses with the file named and the fix; nothing written."
    f = run / "sft" / "model.safetensors"; f.write_bytes(f.read_bytes()[:1000])
    shutil.rmtree(run / "lcdd"); shutil.rmtree(run / "trigger")
    before = checksums(run)
    code, err = sftr(capsys, "lcdd", run)
    assert code == 2
    one_line_error(err, "lcdd", "model.safetensors", "delete")
    assert checksums(run) == before and not (run / "lcdd").exists()


def test_3_damaged_model_file_outside_a_run(run, tmp_path, capsys):
    "sftr lcdd R --sft DIR with a damaged checkpoint in DIR (no stage record): the loader's error is one line naming DIR."
    shutil.copytree(run / "sft", tmp_path / "ext"); (tmp_path / "ext" / "complete.json").unlink()
    (tmp_path / "ext" / "model.safetensors").write_bytes(b"garbage" * 10)
    shutil.rmtree(run / "lcdd"); shutil.rmtree(run / "trigger")
    code, err = sftr(capsys, "lcdd", run, "--sft", tmp_path / "ext")
    assert code == 2
    one_line_error(err, "lcdd", "is damaged or incomplete", str(tmp_path / "ext"))


def test_3_full_disk_is_one_line(run, capsys, monkeypatch):
    "No space left while writing the carrier: exit 2, one line naming the file; nothing half-written."
    import sft_reverse_nb.artefacts as artefacts
    from safetensors import SafetensorError
    real = artefacts.save_file
    def full(tensors, filename, metadata=None):            # the disk fills up while a tensor file is written, as safetensors reports it
        if Path(filename).name.endswith(".tmp"): raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)
    shutil.rmtree(run / "lcdd"); shutil.rmtree(run / "trigger")
    monkeypatch.setattr(artefacts, "save_file", full)
    code, err = sftr(capsys, "lcdd", run, "--steps", "2")
    monkeypatch.setattr(artefacts, "save_file", real)
    assert code == 2
    one_line_error(err, "lcdd", "No space left on device", ".safetensors", str(run / "lcdd"))
    assert not (run / "lcdd" / "complete.json").exists()
    assert not [p for p in run.rglob(".*.tmp")]


def test_3_ctrl_c_exits_130(tmp_path):
    "Ctrl-C during `sftr sft`: exit status 130 and one line, no traceback; the same command then resumes and finishes."
    env = {**os.environ, "SFTR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sft_reverse_nb.cli", "sft", str(tmp_path / "R"), "--preset", "tiny", "--steps", "400", "--save-every", "5"]
    # SIGINT as a terminal delivers it: the tests may run with SIGINT ignored (a background job of a non-interactive shell,
    # e.g. `bash .ci/run &`), a child inherits an ignored signal, and Python would then never raise KeyboardInterrupt
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "R" / "sft" / "train_state" / "state.json").exists(): time.sleep(0.2)
    assert (tmp_path / "R" / "sft" / "train_state" / "state.json").exists(), "no checkpoint within 120 s"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err[-2000:])
    assert "Traceback" not in err
    assert [l for l in err.splitlines() if l.startswith("sftr sft:")] == [l for l in err.splitlines() if "interrupted" in l]
    assert "sftr sft: interrupted" in err
    assert not (tmp_path / "R" / "sft" / "complete.json").exists()


def test_3_prompts_longer_than_the_context(run, tmp_path, capsys):
    "sftr eval R --prompts LONG.txt: refused before any generation, naming the prompt; nothing written."
    (tmp_path / "long.txt").write_text("Short question?\n" + "Tell me about " + "the sea " * 3000 + "\n")
    before = checksums(run)
    code, err = sftr(capsys, "eval", run, "--prompts", tmp_path / "long.txt")
    assert code == 2
    one_line_error(err, "eval", "prompt(s) (numbers 2;", "do not fit the model's context", "shorten them")
    assert checksums(run) == before


def test_3_prompts_not_utf8(run, tmp_path, capsys):
    (tmp_path / "latin.txt").write_bytes("Qu'est-ce qu'un caf\u00e9 ?\n".encode("latin-1"))
    code, err = sftr(capsys, "eval", run, "--prompts", tmp_path / "latin.txt")
    assert code == 2
    one_line_error(err, "eval", "latin.txt is not UTF-8 text", "save it as UTF-8")


# ---------------------------------------------------------------- 5. what a run may do

def test_5_trust_remote_code_in_a_run_config_is_not_honoured(run, capsys, monkeypatch):
    "A run directory whose config.json asks for trust_remote_code: every model of `sftr eval` loads without it."
    import sft_reverse_nb.pipeline as pipe
    cfg = json.loads((run / "config.json").read_text()); cfg["trust_remote_code"] = True
    (run / "config.json").write_text(json.dumps(cfg))
    seen, real = [], pipe.load_model
    def spy(name, **kw):
        seen.append(kw.get("trust_remote_code")); return real(name, **kw)
    monkeypatch.setattr(pipe, "load_model", spy)
    with pytest.warns(UserWarning, match="never allowed to run a model's code"):
        code, _ = sftr(capsys, "eval", run, "--conditions", "sft", "lcdd", "--utility", "none")
    assert code == 0 and seen and not any(seen)


def test_5_code_judge_from_a_config_is_refused(run, capsys):
    cfg = json.loads((run / "config.json").read_text()); cfg["eval"]["judge"] = "py:os:system"
    (run / "config.json").write_text(json.dumps(cfg))
    before = checksums(run)
    code, err = sftr(capsys, "eval", run)
    assert code == 2
    one_line_error(err, "eval", "code judge 'py:os:system'", "never from a configuration file")
    assert checksums(run) == before


@pytest.mark.parametrize("argv,cmd", [(("erase", "--name", "../x"), "erase"), (("erase", "--name", "/tmp/abs-trigger"), "erase"),
                                      (("eval", "--conditions", "lcdd+../../.."), "eval"), (("eval", "--conditions", "sft+/etc"), "eval")],
                         ids=["erase-name-dotdot", "erase-name-absolute", "condition-dotdot", "condition-absolute"])
def test_5_names_stay_inside_the_run(run, capsys, argv, cmd):
    before = checksums(run)
    code, err = sftr(capsys, argv[0], run, *argv[1:])
    assert code == 2
    one_line_error(err, cmd, "must be a relative path inside the run")
    assert checksums(run) == before
    assert not (run.parent / "x").exists() and not Path("/tmp/abs-trigger").exists()
