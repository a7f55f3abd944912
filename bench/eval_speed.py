"""Benchmark: the evaluation's two kinds of passes, each against the way it ran before.

`--part generate`: greedy decoding that drops finished rows (`greedy_decode`) vs `model.generate`, which computes
every row until the last one ends. `sft_reverse_nb.generate.generate` runs both: plain (`greedy_decode`) and with
`repetition_penalty=1.0`, which goes through `model.generate` with no logits processor (a penalty of 1 changes no
logit). Workload: `--n-prompts` of the Fixed Response task's *training* instructions (no held-out prompt is read) in one
batch, `--max-new-tokens` new tokens, as the demo's evaluation generates.

`--part teacher_force`: teacher forcing with the opening every row shares run once per batch (`share_prefix=True`)
vs every row carrying its own copy. Workloads, as the evaluation scores them (batch 8, `kl_batch_size`): the model's
own first 6 answer tokens to the same training instructions (the KL benchmark's references on the demo are the SFT
model's six-token fixed answer) and the 64 built-in reference answers (`reference_nll`).

Both on SmolLM2-135M-Instruct on CPU (eager attention, as the cpu-smollm2 preset loads it) under bf16 autocast (or
fp32); the two ways alternate `--reps` times; the script prints each time, the ratio of the medians, and how far the
outputs of the two ways differ (under bf16 a different batch shape may round a matmul differently).

    python bench/eval_speed.py --part generate|teacher_force [--reps 3] [--n-prompts 100] [--max-new-tokens 128]
                               [--mixed-precision bf16|no] [--trigger DIR]

`--trigger DIR` (a run's `trigger/`) measures the triggered carrier instead: the model is then `DIR/../lcdd`.
"""
import argparse, statistics, time
from contextlib import nullcontext
from pathlib import Path

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.arch import load_model, load_tokenizer
from sft_reverse_nb.eraser import Trigger
from sft_reverse_nb.evaluation import builtin_references
from sft_reverse_nb.generate import generate, teacher_force
from sft_reverse_nb.pipeline import build_task, get_preset


def timed(ways: dict, reps: int, ac) -> tuple[dict, dict]:
    "Run each way `reps` times, alternating; the seconds of each run and each way's last output."
    secs, outs = {k: [] for k in ways}, {}
    for r in range(reps):
        for name, f in ways.items():
            t = time.perf_counter()
            with ac(): outs[name] = f()
            secs[name].append(time.perf_counter() - t)
            print(f"  rep {r + 1} {name:>10}: {secs[name][-1]:6.1f} s", flush=True)
    return secs, outs


def ratio_line(secs: dict, new: str, old: str) -> str:
    med = {k: statistics.median(v) for k, v in secs.items()}
    per = [a / b for a, b in zip(secs[new], secs[old])]
    return (f"seconds: {new} {med[new]:.2f}, {old} {med[old]:.2f} (medians of {len(per)}); {new}/{old} = {med[new] / med[old]:.3f} "
            f"(per rep: min {min(per):.3f}, median {statistics.median(per):.3f}, max {max(per):.3f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", required=True, choices=["generate", "teacher_force"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n-prompts", type=int, default=100)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--mixed-precision", default="bf16", choices=["bf16", "no"])
    ap.add_argument("--trigger", type=Path, default=None, help="a run's trigger/ folder: measure the triggered carrier (RUN/lcdd)")
    args = ap.parse_args()
    cfg = get_preset("cpu-smollm2")
    tok = load_tokenizer("smollm2")
    model = load_model(str(args.trigger.parent/"lcdd") if args.trigger else "smollm2", attn_implementation=cfg["attn_implementation"]).eval()
    prefix = Trigger.load(args.trigger, model).embeds if args.trigger else None
    prompts = [p for p, _ in build_task(cfg["task"]).train][:args.n_prompts]
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.mixed_precision == "bf16" else nullcontext
    what = f"SmolLM2-135M-Instruct{' + trigger' if prefix is not None else ''}, CPU {torch.get_num_threads()} threads, {args.mixed_precision}"
    with ac(): generate(model, tok, prompts[:4], max_new_tokens=4, prefix=prefix)          # warm-up
    if args.part == "generate":
        gen = lambda **kw: generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=len(prompts), prefix=prefix,
                                    return_ids=True, **kw)
        secs, ids = timed({"drop": gen, "generate": lambda: gen(repetition_penalty=1.0)}, args.reps, ac)
        lens = sorted(map(len, ids["drop"]))
        print(f"{what}, {len(prompts)} prompts in one batch, max {args.max_new_tokens} new tokens")
        print(f"answer lengths: min {lens[0]}, median {lens[len(lens) // 2]}, mean {sum(lens) / len(lens):.1f}, max {lens[-1]}; "
              f"answers that differ between the two: {sum(a != b for a, b in zip(ids['drop'], ids['generate']))}")
        print(ratio_line(secs, "drop", "generate"))
        return
    with ac(): short = [a[:6] for a in generate(model, tok, prompts, max_new_tokens=6, batch_size=len(prompts), prefix=prefix, return_ids=True)]
    refs = builtin_references()
    for label, ps, rs in ((f"{len(prompts)} prompts, 6 answer tokens", prompts, short),
                          (f"{len(refs)} built-in references", [p for p, _ in refs], [tok(a, add_special_tokens=False).input_ids for _, a in refs])):
        def tf(share):          # each response token's log-probability, concatenated in the prompts' order
            got = {}
            for idx, lp, m in teacher_force(model, tok, ps, rs, prefix=prefix, batch_size=8, share_prefix=share):
                for row, i in enumerate(idx): got[i] = lp[row][m[row]].gather(-1, torch.tensor(rs[i])[:, None]).flatten()
            return torch.cat([got[i] for i in range(len(ps))])
        secs, outs = timed({"shared": lambda: tf(True), "per_row": lambda: tf(False)}, args.reps, ac)
        a, b = outs["shared"], outs["per_row"]
        print(f"{what}, {label}, batch 8: mean NLL per token {-a.mean():.4f} shared, {-b.mean():.4f} per row; "
              f"largest difference of one token's log p {(a - b).abs().max():.3g}")
        print(ratio_line(secs, "shared", "per_row"))


if __name__ == "__main__":
    main()
