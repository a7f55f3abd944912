"""Benchmark: how much each stage's step slows down beside other work, per thread-runtime setting.

A researcher's laptop, a shared server and a CI machine always have other work on them. This script times
the real steps of every stage on SmolLM2-135M-Instruct (CPU) on an idle machine and then beside `--compete N`
bounded single-threaded busy processes (`while True: pass`, started by the worker right before the timed
steps and killed right after), in one process per setting, so each slowdown is measured in one run:

- `sft`:      a plain-SFT trainer step through `train_sft` (batch 8 x 64 tokens, whole-sequence loss);
- `lcdd`:     an LCDD trainer step through `train_lcdd` (same batch, every gate open);
- `trigger`:  an SFT-Eraser step (16 prompts, 20-token trigger, every 8th channel of every layer);
- `generate`: batched greedy generation (16 prompts, 24 new tokens), one call per step.

Settings (each runs in a fresh process, because OpenMP reads its environment when torch loads it):

- `package`: what `import sft_reverse_nb` sets by default (`sft_reverse_nb.threads`);
- `openmp`:  the OpenMP runtime's own defaults (the package's thread settings turned off with `SFTR_THREADS=off`);
- `passive`: `OMP_WAIT_POLICY=PASSIVE` (idle threads sleep at once);
- `one`:     one thread (`OMP_NUM_THREADS=1`);
- `spin=K`:  `GOMP_SPINCOUNT=K` (idle threads spin K iterations, then sleep);
- `isa=NAME`: the package's default with oneDNN's kernels limited to one instruction set (`ONEDNN_MAX_CPU_ISA=NAME`;
             e.g. `AVX512_CORE` leaves out the AVX512-BF16 and AMX paths that bf16 matmuls take on CPUs that have them).

    python bench/contention.py [--compete 1] [--settings package openmp] [--precision no bf16] [--steps 4] [--repeat 3]

`--repeat R` runs each setting and precision R times, each in its own fresh process that measures idle and busy
steps back to back, and prints each slowdown's min / median / max over the R repetitions.

On a CPU without bf16 hardware (AVX2 only) the bf16 rows measure emulated bf16, which the package itself never
runs there unless SFTR_CPU_BF16=on (it computes in float32: nbs/02c_precision.ipynb).

Printed: per setting, precision and stage the median step time idle and beside the busy processes, their
ratio (the slowdown; target <= 2), and LCDD's slowdown over SFT's (target <= 1.2); with `--repeat` also the
min / median / max of each ratio over the repetitions.
"""
import argparse, json, os, statistics, subprocess, sys, time
from contextlib import nullcontext
from pathlib import Path

SETTINGS = {"package": {}, "openmp": {"SFTR_THREADS": "off"}, "passive": {"SFTR_THREADS": "off", "OMP_WAIT_POLICY": "PASSIVE"},
            "one": {"SFTR_THREADS": "off", "OMP_NUM_THREADS": "1"}}


def setting_env(name: str) -> dict:
    if name.startswith("spin="): return {"SFTR_THREADS": "off", "GOMP_SPINCOUNT": name.split("=", 1)[1]}
    if name.startswith("isa="): return {"ONEDNN_MAX_CPU_ISA": name.split("=", 1)[1]}
    return SETTINGS[name]


class Busy:
    "N single-threaded busy processes for the duration of a `with` block."
    def __init__(self, n: int): self.n = n
    def __enter__(self):
        self.ps = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(0.5); return self
    def __exit__(self, *a):
        for p in self.ps: p.kill()
        for p in self.ps: p.wait()


class Stop(Exception): pass


def stage_steps(precision: str):
    "One callable per stage; each call runs `n` steps of that stage and returns their times (the first step of each call dropped)."
    import copy, shutil, tempfile
    import torch
    os.environ["SFTR_NO_PROGRESS"] = "1"
    if precision == "bf16": os.environ["SFTR_CPU_BF16"] = "on"    # bf16 as asked, also where the CPU emulates it (the package would compute in float32; bench/precision.py)
    sys.path.insert(0, str(Path(__file__).parent))
    from lcdd_step import bench_task
    from sft_reverse_nb.arch import load_model, load_tokenizer, layout_of
    from sft_reverse_nb.carrier import perturbed_copy
    from sft_reverse_nb.data import builtin_prompts, chat_format
    from sft_reverse_nb.train import TrainConfig
    from sft_reverse_nb.sft import train_sft
    from sft_reverse_nb.lcdd import LCDDConfig, train_lcdd
    from sft_reverse_nb.eraser import base_targets, init_trigger, project_ball, trigger_forward, trigger_loss
    from sft_reverse_nb.generate import generate, pad_left, pad_id
    (task, max_len, loss_on), tok = bench_task(64), load_tokenizer("smollm2")
    base = load_model("smollm2"); sft = perturbed_copy(base, scale=0.02)
    out = Path(tempfile.mkdtemp())
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext

    def trainer(kind):
        def run(n):
            times = []
            def cb(step, rec):
                if step > 1: times.append(rec["sec"])
                if step == n + 1: raise Stop
            common = dict(steps=n + 2, batch_size=8, lr=1e-4, loss_on=loss_on, mixed_precision=precision, save_every=10**6, max_len=max_len)
            shutil.rmtree(out/kind, ignore_errors=True)
            try:
                if kind == "sft": train_sft(copy.deepcopy(sft), tok, task, out/kind, TrainConfig(**common), callbacks=[cb])
                else: train_lcdd(copy.deepcopy(sft), base, tok, task, out/kind, LCDDConfig(**common, sparsity_warmup=30), callbacks=[cb])
            except Stop: pass
            return times
        return run

    fmt = chat_format(tok); prompts = builtin_prompts()[:16]
    ids = [tok(fmt.prompt(p), add_special_tokens=False).input_ids for p in prompts]
    lay = layout_of(base); channels = {i: list(range(0, lay.d_model, 8)) for i in range(lay.n_layers)}
    frozen = copy.deepcopy(base).requires_grad_(False).eval()
    targets = base_targets(frozen, ids, pad_id(tok), channels, 8, 16, autocast=ac)
    tau = torch.nn.Parameter(init_trigger(frozen, 20)); opt = torch.optim.Adam([tau], lr=3e-3)
    enc, idx, layers = pad_left(ids, pad_id(tok)), torch.arange(len(ids)), sorted(channels)

    def trigger_step():
        with ac(): st, lg = trigger_forward(frozen, tau, enc, layers, 8)
        loss, _ = trigger_loss(st, lg, tau, targets, idx, channels)
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_([tau], 1.0); opt.step(); project_ball(tau.data, 1.0)

    def generate_step():
        with ac(): generate(frozen, tok, prompts, max_new_tokens=24, batch_size=16)

    return {"sft": trainer("sft"), "lcdd": trainer("lcdd"), "trigger": lambda n: timed(trigger_step, n), "generate": lambda n: timed(generate_step, n)}


def timed(step, n: int) -> list:
    "Times of `n` calls of `step` after one untimed call."
    step(); times = []
    for _ in range(n):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    return times


def worker(precision: str, stages: list, steps: int, compete: int):
    from sft_reverse_nb.threads import thread_settings      # the package first: its thread settings must be in place before torch loads
    import torch
    fns = stage_steps(precision)
    res = {"threads": torch.get_num_threads(), "settings": thread_settings(), "stages": {}}
    for s in stages:
        idle = fns[s](steps)
        with Busy(compete): busy = fns[s](steps)
        res["stages"][s] = {"idle": idle, "busy": busy}
    print("RESULT " + json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compete", type=int, default=1, help="busy single-threaded processes beside the timed steps")
    ap.add_argument("--settings", nargs="+", default=["package", "openmp"], help="package, openmp, passive, one, spin=K, isa=NAME")
    ap.add_argument("--precision", nargs="+", default=["no", "bf16"], choices=["no", "bf16"])
    ap.add_argument("--stages", nargs="+", default=["sft", "lcdd", "trigger", "generate"])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per stage and phase")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions of each setting and precision (each a fresh process)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(a.worker, a.stages, a.steps, a.compete)
    rows, ratios = [], {}
    for name in a.settings:
        for prec in a.precision:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "ONEDNN_MAX_CPU_ISA")} | setting_env(name)
            for rep in range(a.repeat):
                r = subprocess.run([sys.executable, __file__, "--worker", prec, "--stages", *a.stages, "--steps", str(a.steps), "--compete", str(a.compete)],
                                   capture_output=True, text=True, env=env)
                line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
                if r.returncode or not line: sys.exit(f"worker {name}/{prec} failed:\n{r.stderr[-3000:]}")
                res = json.loads(line[-1][7:])
                med = {s: (statistics.median(v["idle"]), statistics.median(v["busy"])) for s, v in res["stages"].items()}
                for s, (i, b) in med.items():
                    rows.append((name, prec, rep + 1, s, i, b, b / i)); ratios.setdefault((name, prec, s), []).append(b / i)
                extra = ""
                if {"sft", "lcdd"} <= set(med):
                    rel = med['lcdd'][1] / med['lcdd'][0] / (med['sft'][1] / med['sft'][0])
                    ratios.setdefault((name, prec, "LCDD / SFT slowdown"), []).append(rel); extra = f"; LCDD slowdown / SFT slowdown {rel:.2f}"
                print(f"{name:<10} {prec:<5} repetition {rep + 1}: threads {res['threads']}, {res['settings']}{extra}", flush=True)
                for s, (i, b) in med.items(): print(f"    {s:<9} idle {1000 * i:8.1f} ms   beside {a.compete} busy {1000 * b:8.1f} ms   slowdown {b / i:5.2f}", flush=True)
    print(f"\nSmolLM2-135M-Instruct, CPU, {os.cpu_count()} cores, {a.compete} busy process(es), median of {a.steps} steps per phase")
    print("| setting | precision | repetition | stage | idle (ms) | beside busy (ms) | slowdown |\n|---|---|---|---|---|---|---|")
    for n, p, k, s, i, b, r in rows: print(f"| {n} | {p} | {k} | {s} | {1000 * i:.0f} | {1000 * b:.0f} | {r:.2f} |")
    print(f"\nSlowdown over {a.repeat} repetition(s), each measured in one process against its own idle steps")
    print("| setting | precision | stage | min | median | max |\n|---|---|---|---|---|---|")
    for (n, p, s), v in ratios.items(): print(f"| {n} | {p} | {s} | {min(v):.2f} | {statistics.median(v):.2f} | {max(v):.2f} |")

if __name__ == "__main__":
    main()
