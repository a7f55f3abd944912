"""Benchmark: batched greedy generation vs one prompt at a time, in generated tokens per second.

Workload (issue 5): SmolLM2-135M-Instruct on CPU, 16 built-in Fixed Response prompts in their chat format, greedy,
`--max-new-tokens` new tokens (answers may stop earlier at EOS; only real tokens are counted), through
`sft_reverse_nb.generate.generate` with batch 16 and with batch 1, alternating `--reps` times. Target: >= 4x.

    python bench/generate_speed.py [--reps 2] [--max-new-tokens 64] [--mixed-precision bf16|no]
"""
import argparse, statistics, time
from contextlib import nullcontext

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.arch import load_model, load_tokenizer
from sft_reverse_nb.data import builtin_prompts
from sft_reverse_nb.generate import generate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--n-prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--mixed-precision", default="bf16", choices=["bf16", "no"])
    args = ap.parse_args()
    tok, model = load_tokenizer("smollm2"), load_model("smollm2").eval()
    prompts = builtin_prompts()[:args.n_prompts]
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.mixed_precision == "bf16" else nullcontext
    rates = {16: [], 1: []}
    with ac(): generate(model, tok, prompts[:2], max_new_tokens=4)              # warm-up
    for _ in range(args.reps):
        for bs in (16, 1):
            t = time.perf_counter()
            with ac(): ids = generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=bs, return_ids=True)
            dt = time.perf_counter() - t
            rates[bs].append(sum(map(len, ids)) / dt)
            print(f"  batch {bs:>2}: {sum(map(len, ids))} tokens in {dt:6.1f} s = {rates[bs][-1]:6.1f} tokens/s")
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"SmolLM2-135M-Instruct, CPU {torch.get_num_threads()} threads, {args.mixed_precision}, {len(prompts)} prompts, "
          f"max {args.max_new_tokens} new tokens")
    print(f"tokens/s batch 16 = {med[16]:.1f}, batch 1 = {med[1]:.1f}; ratio = {med[16] / med[1]:.2f}   (target >= 4)")


if __name__ == "__main__":
    main()
