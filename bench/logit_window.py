"""Benchmark: what computing the logits only from the first labelled position on (`lm_logits`, nbs/05_train.ipynb) saves.

The real SFT and LCDD trainer steps (`train_sft` / `train_lcdd`) on SmolLM2-135M-Instruct, CPU, batch 8 of the
cpu-smollm2 preset's Fixed Response examples (about 45 tokens, response-only loss), timed in alternating blocks in
one process: `window` is the package as it is, `all` the same step with the logits of every position (the window
switched off). Reported: each median step time and the ratio all / window per stage, measured in the same run.

    python bench/logit_window.py [--blocks 3] [--block 5] [--mixed-precision bf16|no] [--repeat 1]
"""
import argparse, copy, os, shutil, statistics, tempfile
from pathlib import Path


class Stop(Exception): pass


def timing(blocks: int, block: int, mp: str, skip: int = 2) -> dict:
    os.environ["SFTR_NO_PROGRESS"] = "1"
    os.environ["SFTR_BACKGROUND_SAVE"] = "0"      # the blocks hand over through checkpoints: written at once, not into the next (timed) step
    import sft_reverse_nb.train as train
    from sft_reverse_nb.arch import load_model, load_tokenizer
    from sft_reverse_nb.carrier import perturbed_copy
    from sft_reverse_nb.data import fixed_response
    from sft_reverse_nb.sft import train_sft
    from sft_reverse_nb.lcdd import LCDDConfig, train_lcdd
    window = train.label_window
    task, tok = fixed_response(n_train=800, n_eval=100), load_tokenizer("smollm2")
    base = load_model("smollm2"); sft = perturbed_copy(base, scale=0.02)
    out, total = Path(tempfile.mkdtemp()), blocks * block + 1
    common = dict(steps=total, batch_size=8, lr=1e-4, loss_on="response", mixed_precision=mp, save_every=block)
    times = {f"{s}-{w}": {} for s in ("sft", "lcdd") for w in ("window", "all")}
    for b in range(blocks):
        for key in times:
            stage, mode = key.split("-")
            first, last = b * block + 1, (b + 1) * block + 1
            def cb(step, rec, key=key, first=first, last=last):
                if step >= first + skip: times[key][step] = rec["sec"]
                if step == last: raise Stop
            train.label_window = window if mode == "window" else (lambda labels: 0)
            try:
                if stage == "sft": train_sft(copy.deepcopy(sft), tok, task, out/key, train.TrainConfig(**common), callbacks=[cb])
                else: train_lcdd(copy.deepcopy(sft), base, tok, task, out/key, LCDDConfig(**common, sparsity_warmup=30), callbacks=[cb])
            except Stop: pass
    train.label_window = window
    shutil.rmtree(out, ignore_errors=True)
    return {k: list(v.values()) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--mixed-precision", default="bf16", help="as the cpu-smollm2 preset (bf16; float32 where the CPU lacks bf16 hardware)")
    ap.add_argument("--repeat", type=int, default=1, help="independent timings in this process; each ratio is printed as min / median / max")
    a = ap.parse_args()
    ratios = {"sft": [], "lcdd": []}
    for r in range(a.repeat):
        t = timing(a.blocks, a.block, a.mixed_precision)
        med = {k: statistics.median(v) for k, v in t.items()}
        print(f"repetition {r + 1}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in med.items()))
        for s in ratios: ratios[s].append(med[f"{s}-all"] / med[f"{s}-window"])
    print(f"SmolLM2-135M-Instruct, CPU, batch 8 of the demo's Fixed Response examples, response-only loss, mixed precision {a.mixed_precision}")
    for s, v in ratios.items():
        print(f"  {s:<4} step time, all positions / window: min {min(v):.3f}, median {statistics.median(v):.3f}, max {max(v):.3f}")


if __name__ == "__main__":
    main()
