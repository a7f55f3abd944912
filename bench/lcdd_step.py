"""Benchmark: the real LCDD trainer step vs the real plain-SFT trainer step, and their peak memory.

Each stage runs in its own fresh process on SmolLM2-135M-Instruct (CPU, Fixed Response on the built-in
prompts, batch 8, same dtype), through `train_sft` / `train_lcdd` themselves: forward, backward,
optimiser steps, penalty and controller included. Reported: the median step time of each (first
steps dropped) and their ratio (target <= 1.10), and the process's resident memory: before training
(models loaded) and its peak during training, sampled every millisecond.

LCDD is timed in two gate states, because the gated projection takes different paths: `lcdd` starts
from the default initialisation (every gate open, as at the start of a run: W_base + Delta), and
`lcdd-sparse` from gate logits drawn around -0.5 (about 84 % of the gates closed, as at the end of a
run: W_base + (r c^T) * Delta with both sides gated).

    python bench/lcdd_step.py [--seq 64 | --seq 0] [--blocks 4] [--block 5] [--mixed-precision no|bf16] [--kernels on|off] [--attn-implementation eager]

`--kernels off` times the gated projection's torch-operation path instead of the fused CPU kernels of
`nbs/02a_kernels.ipynb` (SFTR_CPU_KERNELS=0); `--kernels both` times both paths in the same alternation, so that
what the kernels save is measured under the same machine noise.

The blocks hand over through checkpoints (each resumes where the stage's last block stopped), so they are written at once
(`SFTR_BACKGROUND_SAVE=0`, nbs/05_train.ipynb): a background write would run into the next block's timed steps.

`--seq 64` (default) is DESIGN.md §6's workload (batch 8 x 64, whole-sequence loss); `--seq 0` uses the
task's own examples (about 45 tokens, response-only loss) as the CPU preset trains on them.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path


def rss_bytes() -> int:
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    "Sample the resident set size in a background thread; `peak` is the maximum seen, `window` since the last `reset`."
    def __init__(self, every=0.001): self.every, self.peak, self.window, self._stop = every, rss_bytes(), rss_bytes(), threading.Event()
    def reset(self) -> int:
        w, self.window = self.window, rss_bytes(); return w
    def _run(self):
        while not self._stop.is_set():
            r = rss_bytes(); self.peak, self.window = max(self.peak, r), max(self.window, r); time.sleep(self.every)
    def __enter__(self): self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
    def __exit__(self, *a): self._stop.set(); self._t.join(); self.peak = max(self.peak, rss_bytes())


class Stop(Exception): pass


SPARSE = {"lcdd-sparse": dict(init_mean=-0.5, init_std=0.5)}


def bench_task(seq: int):
    "Fixed Response on the built-in prompts; with `seq` > 0 every example is exactly `seq` tokens (prompts joined, then truncated; whole-sequence loss)."
    from sft_reverse_nb.data import fixed_response, builtin_prompts, TaskData
    if not seq: return fixed_response(n_train=800, n_eval=100), 256, "response"
    p = builtin_prompts()
    joined = [" ".join(p[32 + i:32 + i + 4]) for i in range(0, 3200, 4)]   # long enough that the chat-formatted text exceeds `seq` tokens
    return TaskData("fixed_response", [(q, "I don't know.") for q in joined], ["held out"], "builtin (joined)"), seq, "all"


def timing(blocks: int, block: int, mp: str, seq: int, kernels: str, attn: str | None = None, skip: int = 2) -> dict:
    "Alternating blocks of real trainer steps in one process; per-stage step times (first `skip` of each block dropped)."
    os.environ["SFTR_NO_PROGRESS"] = "1"
    os.environ["SFTR_BACKGROUND_SAVE"] = "0"      # the blocks hand over through checkpoints: written at once, not into the next (timed) step
    import copy
    from sft_reverse_nb.arch import load_model, load_tokenizer
    from sft_reverse_nb.carrier import perturbed_copy
    from sft_reverse_nb.train import TrainConfig; from sft_reverse_nb.sft import train_sft
    from sft_reverse_nb.lcdd import LCDDConfig, train_lcdd
    (task, max_len, loss_on), tok = bench_task(seq), load_tokenizer("smollm2")
    base = load_model("smollm2", attn_implementation=attn); sft = perturbed_copy(base, scale=0.02)
    out, total = Path(tempfile.mkdtemp()), blocks * block + 1
    common = dict(steps=total, batch_size=8, lr=1e-4, loss_on=loss_on, mixed_precision=mp, save_every=block, max_len=max_len)
    from sft_reverse_nb.kernels import use_cpu_kernels
    lcdd_stages = ["lcdd", "lcdd-sparse"] + (["lcdd-torch", "lcdd-sparse-torch"] if kernels == "both" else [])
    times = {"sft": {}, **{k: {} for k in lcdd_stages}}
    for b in range(blocks):
        for stage in times:
            first, last = b * block + 1, (b + 1) * block + 1
            def cb(step, rec, stage=stage, first=first, last=last):
                if step >= first + skip: times[stage][step] = rec["sec"]
                if step == last: raise Stop        # the state of step `last - 1` is on disk; the next block resumes there
            use_cpu_kernels(kernels != "off" and not stage.endswith("-torch"))     # `-torch`: the same step without the fused kernels
            try:
                if stage == "sft": train_sft(copy.deepcopy(sft), tok, task, out/"sft", TrainConfig(**common), callbacks=[cb])
                else: train_lcdd(copy.deepcopy(sft), base, tok, task, out/stage, LCDDConfig(**common, sparsity_warmup=30, **SPARSE.get(stage.removesuffix("-torch"), {})),
                                 callbacks=[cb])
            except Stop: pass
    shutil.rmtree(out, ignore_errors=True)                 # the runs' checkpoints: several GB
    return {k: list(v.values()) for k, v in times.items()}


def worker(stage: str, steps: int, mp: str, seq: int, attn: str | None = None):
    os.environ["SFTR_NO_PROGRESS"] = "1"
    from sft_reverse_nb.arch import load_model, load_tokenizer
    from sft_reverse_nb.carrier import perturbed_copy
    from sft_reverse_nb.train import TrainConfig; from sft_reverse_nb.sft import train_sft
    from sft_reverse_nb.lcdd import LCDDConfig, train_lcdd
    (task, max_len, loss_on), tok = bench_task(seq), load_tokenizer("smollm2")
    from sft_reverse_nb.carrier import Carrier
    base = load_model("smollm2", attn_implementation=attn)
    sft = perturbed_copy(base, scale=0.02)
    if stage == "sft": del base
    else: sft = Carrier.attach(sft, base)     # measure from the attached carrier: Δ replaces the SFT weights
    secs, step_peaks = [], []
    def cb(step, rec):                       # called right after each step: record that step's time and peak memory
        secs.append(rec["sec"]); step_peaks.append(mem.reset())
    out = Path(tempfile.mkdtemp())
    common = dict(steps=steps, batch_size=8, lr=1e-4, loss_on=loss_on, mixed_precision=mp, save_every=10**6, max_len=max_len)
    before = rss_bytes()
    with PeakRSS() as mem:
        if stage == "sft": train_sft(sft, tok, task, out/"sft", TrainConfig(**common), callbacks=[cb])
        else: train_lcdd(sft, base, tok, task, out/"lcdd", LCDDConfig(**common, sparsity_warmup=30), callbacks=[cb])
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"stage": stage, "secs": secs, "step_peaks": step_peaks, "rss_before": before, "rss_peak": mem.peak}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="steps of each memory process")
    ap.add_argument("--blocks", type=int, default=4, help="alternating blocks per stage (timing)")
    ap.add_argument("--block", type=int, default=5, help="steps per block (timing)")
    ap.add_argument("--mixed-precision", default="no")
    ap.add_argument("--seq", type=int, default=64, help="tokens per example (DESIGN.md §6 workload: 8 x 64); 0: the task's own lengths")
    ap.add_argument("--kernels", choices=["on", "off", "both"], default="on",
                    help="fused CPU kernels for the gated projection (default on; both: also time the torch-operation path)")
    ap.add_argument("--attn-implementation", default=None, help="attention kernel the models load with (default: transformers' own, sdpa; the cpu-smollm2 preset uses eager)")
    ap.add_argument("--worker", choices=["sft", "lcdd"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ["SFTR_CPU_KERNELS"] = "0" if a.kernels == "off" else "1"       # read at import, inherited by the memory workers
    if a.worker: return worker(a.worker, a.steps, a.mixed_precision, a.seq, a.attn_implementation)
    times = timing(a.blocks, a.block, a.mixed_precision, a.seq, a.kernels, a.attn_implementation)
    res = {}
    for stage in ("sft", "lcdd"):
        # glibc keeps freed heap memory mapped, so RSS would over-count; serving large blocks with mmap makes RSS follow live memory
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        out = subprocess.run([sys.executable, __file__, "--worker", stage, "--steps", str(a.steps), "--mixed-precision", a.mixed_precision, "--seq", str(a.seq)] + (["--attn-implementation", a.attn_implementation] if a.attn_implementation else []),
                             capture_output=True, text=True, check=True, env=env)
        res[stage] = json.loads(out.stdout.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in times.items()}
    mb, skip = (lambda x: x / 2**20), 3
    from sft_reverse_nb.kernels import kernel_status
    ks = kernel_status()
    print(f"SmolLM2-135M-Instruct, CPU, batch 8 x {a.seq if a.seq else 'task-length'} tokens, mixed precision {a.mixed_precision}, "
          f"gated projection: {'fused CPU kernels' if ks['loaded'] else 'torch operations (' + str(ks['reason']) + ')'}, attention {a.attn_implementation or 'sdpa (default)'}")
    print(f"time: {a.blocks} alternating blocks of {a.block} real trainer steps per stage in one process "
          f"({len(times['sft'])} / {len(times['lcdd'])} steps timed)")
    for k in times: print(f"  {k:<17} trainer step: median {med[k]*1000:7.1f} ms  (min {min(times[k])*1000:.1f}, max {max(times[k])*1000:.1f})")
    print(f"LCDD / plain SFT trainer step time ratio: {med['lcdd'] / med['sft']:.3f} (gates open), "
          f"{med['lcdd-sparse'] / med['sft']:.3f} (84 % of gates closed)  (target <= 1.10)")
    if "lcdd-torch" in med:
        print(f"  without the fused CPU kernels: {med['lcdd-torch'] / med['sft']:.3f} (gates open), {med['lcdd-sparse-torch'] / med['sft']:.3f} (closed)")
    step_mem = {k: max(r["step_peaks"][skip:]) - r["rss_before"] for k, r in res.items()}
    print(f"memory: one fresh process per stage, {a.steps} steps, peak resident memory of steps {skip + 1}+")
    for k, r in res.items():
        print(f"  {k:<5} {mb(r['rss_before']):7.0f} MiB with models loaded (LCDD: base model + carrier attached), "
              f"step peak +{mb(step_mem[k]):6.0f} MiB above that (process peak {mb(r['rss_peak']):7.0f} MiB)")
    proj = 106_168_320 * 4
    d, dl = step_mem["lcdd"] - step_mem["sft"], res["lcdd"]["rss_before"] - res["sft"]["rss_before"]
    print(f"LCDD - plain SFT, loaded models: {mb(dl):+.0f} MiB = {dl / proj:+.2f} copies of the projection weights ({mb(proj):.0f} MiB): W_base")
    print(f"LCDD - plain SFT, during a step: {mb(d):+.0f} MiB = {d / proj:+.2f} copies: the shared step buffers")
    print(f"LCDD - plain SFT, process peak:  {mb(res['lcdd']['rss_peak'] - res['sft']['rss_peak']):+.0f} MiB = "
          f"{(res['lcdd']['rss_peak'] - res['sft']['rss_peak']) / proj:+.2f} copies  (design target <= +1 copy)")


if __name__ == "__main__":
    main()
