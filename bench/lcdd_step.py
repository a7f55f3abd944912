"""Benchmark: the real LCDD trainer step vs the real plain-SFT trainer step, and their peak memory.

Each stage runs in its own fresh process on SmolLM2-135M-Instruct (CPU, Fixed Response on the built-in
prompts, batch 8, same dtype), through `train_sft` / `train_lcdd` themselves: forward, backward,
optimiser steps, penalty and controller included. Reported: the median step time of each (first
steps dropped) and their ratio (target <= 1.15), and the process's resident memory: before training
(models loaded) and its peak during training, sampled every millisecond.

    python bench/lcdd_step.py [--steps 14] [--mixed-precision no|bf16] [--pairs 2]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path


def rss_bytes() -> int:
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    "Sample the resident set size in a background thread; `peak` is the maximum seen."
    def __init__(self, every=0.001): self.every, self.peak, self._stop = every, rss_bytes(), threading.Event()
    def _run(self):
        while not self._stop.is_set(): self.peak = max(self.peak, rss_bytes()); time.sleep(self.every)
    def __enter__(self): self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
    def __exit__(self, *a): self._stop.set(); self._t.join(); self.peak = max(self.peak, rss_bytes())


def worker(stage: str, steps: int, mp: str):
    os.environ["SFTR_NO_PROGRESS"] = "1"
    import copy, torch
    from sft_reverse_nb.arch import load_model, load_tokenizer
    from sft_reverse_nb.carrier import perturbed_copy
    from sft_reverse_nb.data import fixed_response
    from sft_reverse_nb.sft import TrainConfig, train_sft
    from sft_reverse_nb.lcdd import LCDDConfig, train_lcdd
    tok, task = load_tokenizer("smollm2"), fixed_response(n_train=800, n_eval=100)
    base = load_model("smollm2")
    sft = perturbed_copy(base, scale=0.02)
    if stage == "sft": del base
    secs = []
    cb = lambda step, rec: secs.append(rec["sec"])
    out = Path(tempfile.mkdtemp())
    common = dict(steps=steps, batch_size=8, lr=1e-4, loss_on="response", mixed_precision=mp, save_every=10**6)
    before = rss_bytes()
    with PeakRSS() as mem:
        if stage == "sft": train_sft(sft, tok, task, out/"sft", TrainConfig(**common), callbacks=[cb])
        else: train_lcdd(sft, base, tok, task, out/"lcdd", LCDDConfig(**common, sparsity_warmup=30), callbacks=[cb])
    print(json.dumps({"stage": stage, "secs": secs, "rss_before": before, "rss_peak": mem.peak}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--mixed-precision", default="no")
    ap.add_argument("--pairs", type=int, default=2, help="alternating (SFT, LCDD) process pairs")
    ap.add_argument("--worker", choices=["sft", "lcdd"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(a.worker, a.steps, a.mixed_precision)
    res = {"sft": [], "lcdd": []}
    for _ in range(a.pairs):
        for stage in ("sft", "lcdd"):
            out = subprocess.run([sys.executable, __file__, "--worker", stage, "--steps", str(a.steps), "--mixed-precision", a.mixed_precision],
                                 capture_output=True, text=True, check=True)
            res[stage].append(json.loads(out.stdout.strip().splitlines()[-1]))
    skip = 3
    med = {k: statistics.median([s for r in v for s in r["secs"][skip:]]) for k, v in res.items()}
    mb = lambda x: x / 2**20
    print(f"SmolLM2-135M-Instruct, CPU, batch 8, mixed precision {a.mixed_precision}, {a.steps} steps x {a.pairs} processes per stage "
          f"(first {skip} steps of each dropped)")
    for k, v in res.items():
        peaks = [r["rss_peak"] - r["rss_before"] for r in v]
        print(f"  {k:<5} trainer step: median {med[k]*1000:7.1f} ms;  resident memory: {mb(v[0]['rss_before']):7.0f} MiB with models loaded, "
              f"peak +{mb(max(peaks)):6.0f} MiB during training (peak total {mb(max(r['rss_peak'] for r in v)):7.0f} MiB)")
    proj = 106_168_320 * 4
    d_sft = max(r["rss_peak"] - r["rss_before"] for r in res["sft"]); d_lcdd = max(r["rss_peak"] - r["rss_before"] for r in res["lcdd"])
    print(f"LCDD / plain SFT trainer step time ratio: {med['lcdd'] / med['sft']:.3f}  (target <= 1.15)")
    print(f"LCDD - plain SFT training memory: {mb(d_lcdd - d_sft):+.0f} MiB = {(d_lcdd - d_sft) / proj:+.2f} copies of the projection weights "
          f"({mb(proj):.0f} MiB; target <= +1.00)")


if __name__ == "__main__":
    main()
