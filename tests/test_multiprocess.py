"""SFT, LCDD and SFT-Eraser under `accelerate launch --num_processes 2` with the shipped DDP and FSDP configs (CPU processes over
gloo here) against one process with the same global batch.

Run as a script, this file is the worker that both launches execute:  python tests/test_multiprocess.py {sft,lcdd,erase} OUT [SFT_DIR|LCDD_DIR]
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()
DDP_YAML = HERE.parent.parent / "examples" / "accelerate" / "ddp.yaml"     # the shipped configs; on this CPU machine: gloo
FSDP_YAML = HERE.parent.parent / "examples" / "accelerate" / "fsdp.yaml"
DEEPSPEED_YAML = HERE.parent.parent / "examples" / "accelerate" / "deepspeed.yaml"
# 17 examples in global batches of 8 -> micro-batches of 8, 8, 1 per epoch: with two processes the 1-example batch
# leaves rank 1 with the masked stand-in; grad_accum=2 exercises DDP's no_sync on the first micro-batch of each step.
# The eraser's pool is the same 17 prompts in batches of 8, so its steps 3 and 6 leave rank 1 without a prompt too.
N_TRAIN, SFT_STEPS, LCDD_STEPS, ERASE_STEPS = 17, 6, 12, 8


def sft_config():
    from sft_reverse_nb.train import TrainConfig
    return TrainConfig(steps=SFT_STEPS, batch_size=8, grad_accum=2, lr=1e-2, warmup_steps=1, schedule="constant_with_warmup",
                       loss_on="response", save_every=3, device="cpu")


def lcdd_config(steps: int = LCDD_STEPS):
    from sft_reverse_nb.lcdd import LCDDConfig
    return LCDDConfig(steps=steps, batch_size=8, grad_accum=2, lr=3e-3, loss_on="response", rho=0.3, lambda0=2.0, eta=0.2,
                      eta_grow=0.05, v_clip=1.0, sparsity_warmup=3, eps_abs=0.05, gate_lr=0.5, save_every=4, device="cpu")


def eraser_config():
    from sft_reverse_nb.eraser import EraserConfig
    return EraserConfig(n_tokens=4, steps=ERASE_STEPS, batch_size=8, n_prompts=N_TRAIN, lr=3e-2, radius=4.0, k=4, save_every=3,
                        target_batch_size=8, device="cpu")


def worker(stage: str, out: Path, model_dir: str | None = None, steps: str | None = None):
    from accelerate import PartialState
    from sft_reverse_nb.arch import tiny_model
    from sft_reverse_nb.artefacts import save_tensors
    from sft_reverse_nb.data import fixed_response, tiny_tokenizer
    os.environ["SFTR_NO_PROGRESS"] = "1"
    tok, task = tiny_tokenizer(), fixed_response(n_train=N_TRAIN, n_eval=4)
    if stage == "sft":
        from sft_reverse_nb.sft import train_sft, projection_parameters
        model = train_sft(tiny_model("llama"), tok, task, out / "sft", sft_config())
        mine = dict(projection_parameters(model))
    elif stage == "erase":                         # as `erase_stage` does: the LCDD model, the base, the carrier's write channels
        import transformers
        from sft_reverse_nb.eraser import train_trigger
        lcdd = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
        trig = train_trigger(lcdd, tiny_model("llama"), tok, [p for p, _ in task.train], out / "trigger", eraser_config(), carrier=Path(model_dir))
        mine = {"trigger": trig.embeds}
    else:
        import transformers
        from sft_reverse_nb.lcdd import train_lcdd
        sft = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
        carrier = train_lcdd(sft, tiny_model("llama"), tok, task, out / "lcdd", lcdd_config(int(steps) if steps else LCDD_STEPS))
        mine = {**{f"gate.{k}": v for k, v in carrier.logits.items()},
                **{f"delta.{i}": d for i, d in enumerate(carrier.delta_parameters())}}
    st = PartialState()
    # every process records what it ended with, so the test can check that the processes stayed in lockstep
    save_tensors(mine, out / f"{stage}_rank{st.process_index}_of_{st.num_processes}.safetensors")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "SFTR_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _launch(n: int, *args, config: Path = DDP_YAML):
    "One process (plain python) or `accelerate launch --config_file config --num_processes n` (over gloo here) running this file's worker."
    cmd = [sys.executable, str(HERE), *map(str, args)] if n == 1 else \
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", str(n),
         "--main_process_port", str(_free_port()), str(HERE), *map(str, args)]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _descendants(pid: int) -> list[int]:
    "Process ids below `pid`, read from /proc (children first seen, then theirs)."
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try: parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError): pass
    out, todo = [], [pid]
    while todo:
        me = todo.pop()
        kids = [c for c, p in parent.items() if p == me]
        out += kids; todo += kids
    return out


def _run_all(stage, runs: list[tuple[Path, int, Path]], *extra) -> list[str]:
    "Launch `stage` once per (out dir, processes, config) at the same time; every launch must succeed. Returns their outputs."
    procs = [_launch(n, stage, out, *extra, config=config) for out, n, config in runs]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        # the first traceback is the failing rank's; the other rank's "connection closed by peer" and torchrun's summary come last
        assert p.returncode == 0, out[max(0, out.find("Traceback")):][:3000] + "\n[...]\n" + out[-1500:]
        outs.append(out)
    return outs


def _metrics(d: Path):
    return [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]


def _load(p: Path):
    from safetensors.torch import load_file
    return load_file(str(p))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "SFT then LCDD: one process, two with DDP, with FSDP and with DeepSpeed ZeRO-2; the erase test starts from the LCDD runs."
    tmp = tmp_path_factory.mktemp("mp")
    one, two, sharded, zero = tmp / "one", tmp / "two", tmp / "fsdp", tmp / "zero2"
    launches = [(one, 1, DDP_YAML), (two, 2, DDP_YAML), (sharded, 2, FSDP_YAML), (zero, 2, DEEPSPEED_YAML)]
    outs = {}
    for stage, extra in (("sft", ()), ("lcdd", (one / "sft",))):     # every LCDD run starts from the same SFT model
        for (d, _, _), out in zip(launches, _run_all(stage, launches, *extra)): outs[stage, d.name] = out
    return one, two, sharded, zero, outs


def _launch_info(d: Path) -> dict:
    return json.loads((d / "complete.json").read_text())["launch"]


@pytest.mark.parametrize("sharding", ["none", "fsdp", "zero2"])
def test_sft_and_lcdd_two_processes_match_one(runs, sharding):
    one, two, sharded, zero, outs = runs
    if sharding == "zero2":
        two = zero
        assert [_launch_info(two / s) for s in ("sft", "lcdd")] == [{"processes": 2, "sharding": "zero2"}] * 2
        assert "lcdd: DeepSpeed ZeRO-2 over 2 processes" in outs["lcdd", "zero2"]
    elif sharding == "fsdp":
        two = sharded                                   # the FSDP run really sharded: its stages say so, and record it
        assert [_launch_info(two / s) for s in ("sft", "lcdd")] == [{"processes": 2, "sharding": "fsdp"}] * 2
        for stage, out in (("sft", outs["sft", "fsdp"]), ("lcdd", outs["lcdd", "fsdp"])):   # and each process held about half of the tensors
            held, whole = (int(x.replace(",", "")) for x in re.search(rf"{stage}: FSDP2 over 2 processes: process 0 holds ([\d,]+) of the \w+'s ([\d,]+)", out).groups())
            assert 0.45 < held / whole < 0.55, (stage, held, whole)
    else: assert _launch_info(two / "lcdd") == {"processes": 2, "sharding": "none"}

    stage = "sft"
    # SFT: one writer (one line per step, no duplicates), the two processes ended identical, and equal one process to float tolerance
    m1, m2 = _metrics(one / "sft"), _metrics(two / "sft")
    assert [r["step"] for r in m2] == list(range(1, SFT_STEPS + 1)) == [r["step"] for r in m1]
    torch.testing.assert_close(torch.tensor([r["loss"] for r in m2]), torch.tensor([r["loss"] for r in m1]), rtol=1e-5, atol=1e-6)
    r0, r1 = _load(two / f"{stage}_rank0_of_2.safetensors"), _load(two / f"{stage}_rank1_of_2.safetensors")
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "the two processes' SFT weights diverged"
    single = _load(one / f"{stage}_rank0_of_1.safetensors")
    moved = max((single[k] - r0[k]).abs().max().item() for k in r0)
    assert moved < 1e-5, moved
    w1, w2 = _load(one / "sft" / "model.safetensors"), _load(two / "sft" / "model.safetensors")
    for k in w1: torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-5)
    assert not (two / "sft" / "train_state").exists() and (two / "sft" / "complete.json").exists()

    stage = "lcdd"
    # LCDD: identical gates on both processes (the gate gradients were all-reduced), the same hard gates, λ and ε as one process
    r0, r1 = _load(two / f"{stage}_rank0_of_2.safetensors"), _load(two / f"{stage}_rank1_of_2.safetensors")
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "the two processes' gates or deltas diverged"
    single = _load(one / f"{stage}_rank0_of_1.safetensors")
    gates = [k for k in single if k.startswith("gate.")]
    assert all(torch.equal(single[k] > 0, r0[k] > 0) for k in gates), "hard gates differ from the single-process run"
    for k in single: torch.testing.assert_close(r0[k], single[k], rtol=0, atol=5e-5)   # measured: 6e-6 after 12 steps
    m1, m2 = _metrics(one / "lcdd"), _metrics(two / "lcdd")
    assert [r["step"] for r in m2] == list(range(1, LCDD_STEPS + 1))
    assert [r["active"] for r in m2] == [r["active"] for r in m1]
    assert len({r["active"] for r in m1}) > 1, "no gate closed: the comparison would not test the gate updates"
    for key in ("loss", "lambda", "ema"):
        torch.testing.assert_close(torch.tensor([r[key] for r in m2]), torch.tensor([r[key] for r in m1]), rtol=1e-5, atol=1e-7)
    eps1, eps2 = [r["epsilon"] for r in m1], [r["epsilon"] for r in m2]
    assert [e is None for e in eps1] == [e is None for e in eps2] and eps1[-1] is not None
    torch.testing.assert_close(torch.tensor(eps2[-1]), torch.tensor(eps1[-1]), rtol=1e-6, atol=0)
    g1, g2 = _load(one / "lcdd" / "carrier.safetensors"), _load(two / "lcdd" / "carrier.safetensors")
    assert all(torch.equal(g1[k] > 0, g2[k] > 0) for k in g1)
    c1, c2 = json.loads((one / "lcdd" / "complete.json").read_text()), json.loads((two / "lcdd" / "complete.json").read_text())
    assert c1["sparsity"] == c2["sparsity"] > 0


def test_erase_two_processes_match_one(runs):
    "The trigger's loss compares the batch-mean state with the target: two processes must pool their rows, not average their losses."
    one, two, sharded = runs[:3]
    outs = _run_all("erase", [(one, 1, DDP_YAML), (two, 2, DDP_YAML), (sharded, 2, FSDP_YAML)], one / "lcdd")   # all erase the same carrier
    assert "erase: FSDP launch: the frozen model is kept whole" in outs[2]
    for d in (two, sharded): _check_erase(one, d)


def _check_erase(one: Path, two: Path):
    r0, r1 = _load(two / "erase_rank0_of_2.safetensors")["trigger"], _load(two / "erase_rank1_of_2.safetensors")["trigger"]
    assert torch.equal(r0, r1), "the two processes' triggers diverged"
    single = _load(one / "erase_rank0_of_1.safetensors")["trigger"]
    # measured: 5e-7 after 8 steps, in which the trigger moves by up to 0.2 (the final τ as well as the best one returned)
    torch.testing.assert_close(r0, single, rtol=0, atol=5e-6)
    s1, s2 = _load(one / "trigger" / "train_state" / "state.safetensors"), _load(two / "trigger" / "train_state" / "state.safetensors")
    torch.testing.assert_close(s2["trigger"], s1["trigger"], rtol=0, atol=5e-6)
    m1, m2 = _metrics(one / "trigger"), _metrics(two / "trigger")
    assert [r["step"] for r in m2] == list(range(1, ERASE_STEPS + 1)) == [r["step"] for r in m1]
    # the parts too: each must be the whole batch's, not rank 0's share (measured: 1e-6 relative; the 1-prompt steps' loss is ~5x the others')
    for key in ("loss", "mse", "kl", "l2", "best", "grad_norm"):
        torch.testing.assert_close(torch.tensor([r[key] for r in m2]), torch.tensor([r[key] for r in m1]), rtol=1e-5, atol=1e-6)
    from sft_reverse_nb.train import micro_batch
    assert len(micro_batch(N_TRAIN, eraser_config().batch_size, 0, 2)) == 1, "no 1-prompt batch: rank 1's empty share would go untested"
    t = _load(two / "trigger" / "trigger.safetensors")["trigger"]
    assert torch.equal(t, r0) and (two / "trigger" / "peft" / "adapter_model.safetensors").exists()
    names = lambda d: sorted(p.name for p in (d / "trigger").iterdir())
    assert names(two) == names(one) and not [n for n in names(two) if n.startswith(".")]     # one writer, no temporaries left
    c1, c2 = json.loads((one / "trigger" / "complete.json").read_text()), json.loads((two / "trigger" / "complete.json").read_text())
    assert c1["complete"] is c2["complete"] is True and c1["steps"] == c2["steps"] == ERASE_STEPS and c1["best_step"] == c2["best_step"]



@pytest.mark.parametrize("config, resume_n", [(DDP_YAML, 1), (FSDP_YAML, 2), (DEEPSPEED_YAML, 2)],
                         ids=["ddp-resumed-by-one", "fsdp-resumed-by-fsdp", "zero2-resumed-by-zero2"])
def test_two_process_run_killed_then_resumed(tmp_path, config, resume_n):
    "A killed 2-process LCDD run, finished by one process (the global batch does not depend on the process count) or by FSDP again."
    import signal, time
    from sft_reverse_nb.arch import tiny_model
    from sft_reverse_nb.carrier import perturbed_copy
    sft, ref, run = tmp_path / "sft", tmp_path / "ref", tmp_path / "run"
    perturbed_copy(tiny_model("llama"), scale=0.5).save_pretrained(sft)
    one = _launch(1, "lcdd", ref, sft, 40)
    two = _launch(2, "lcdd", run, sft, 40, config=config)
    state, deadline = run / "lcdd" / "train_state" / "state.json", time.time() + 240
    while not state.exists():
        assert two.poll() is None, two.communicate()[0][-3000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.005)
    for pid in [two.pid, *_descendants(two.pid)]:       # the launcher and both workers (torchrun starts them in their own sessions)
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass
    assert two.wait(timeout=60) == -signal.SIGKILL and not (run / "lcdd" / "complete.json").exists()
    killed_at = json.loads(state.read_text())["step"]
    assert 4 <= killed_at < 40
    out, _ = one.communicate(timeout=300); assert one.returncode == 0, out[-3000:]
    r = _launch(resume_n, "lcdd", run, sft, 40, config=config)
    out, _ = r.communicate(timeout=300); assert r.returncode == 0, out[-3000:]
    assert f"lcdd: resuming from step {killed_at}/40" in out
    a, b = _load(ref / "lcdd_rank0_of_1.safetensors"), _load(run / f"lcdd_rank0_of_{resume_n}.safetensors")
    assert all(torch.equal(a[k] > 0, b[k] > 0) for k in a if k.startswith("gate."))
    for k in a: torch.testing.assert_close(b[k], a[k], rtol=0, atol=5e-5)
    m1, m2 = _metrics(ref / "lcdd"), _metrics(run / "lcdd")
    assert [r["step"] for r in m2] == list(range(1, 41)) and [r["active"] for r in m2] == [r["active"] for r in m1]
    torch.testing.assert_close(torch.tensor([r["lambda"] for r in m2]), torch.tensor([r["lambda"] for r in m1]), rtol=1e-5, atol=0)

if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
