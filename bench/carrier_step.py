"""Benchmark: gated (carrier) forward+backward vs plain SFT forward+backward, measured in one run.

Workload (DESIGN.md §6): SmolLM2-135M-Instruct on CPU, fp32, batch 8 x 64 tokens, embeddings and
lm_head frozen, projection weights (plain) or deltas + gate logits (carrier) trainable; the carrier
step includes the sparsity penalty. The two models alternate in blocks of `--block` consecutive
steps (only the block's last `--block - 1` steps are timed: a training loop repeats one kind of step,
so the allocator reaches a steady state that a strict A/B alternation would disturb), so that machine
noise hits both alike; the ratio of medians is printed. Target: <= 1.10 (the authors' parametrisation: 1.41-1.45).

    python bench/carrier_step.py [--reps 15] [--batch 8] [--seq 64] [--dtype float32] [--model smollm2]
"""
import argparse, copy, statistics, time

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.arch import layout_of, load_model, resolve_dtype
from sft_reverse_nb.carrier import Carrier, perturbed_copy
from sft_reverse_nb.sft import freeze_outside_projections


def workload(model: str, dtype, batch: int, seq: int):
    "The base model, a plain SFT model (a perturbed copy, only its projection weights trainable), its layout and a batch of token ids."
    base = load_model(model, dtype=dtype)
    plain = perturbed_copy(base, scale=0.02).train()
    freeze_outside_projections(plain)          # embeddings, lm_head and norms frozen as in LCDD
    lay = layout_of(plain)
    ids = torch.randint(0, lay.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
    return base, plain, lay, ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--reps", type=int, default=8, help="blocks per model")
    ap.add_argument("--block", type=int, default=3, help="consecutive steps per block (the first is not timed)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    dtype = resolve_dtype(args.dtype)

    base, plain, lay, ids = workload(args.model, dtype, args.batch, args.seq)
    carrier = Carrier.attach(copy.deepcopy(plain), base)          # the same SFT model as a carrier
    carrier.model.train()

    def plain_step():
        plain.zero_grad(set_to_none=True)
        plain(input_ids=ids, labels=ids).loss.backward()

    def carrier_step():
        carrier.model.zero_grad(set_to_none=True)
        (carrier.model(input_ids=ids, labels=ids).loss + 1e-4 * carrier.penalty()).backward()

    for f in (plain_step, carrier_step, plain_step, carrier_step): f()   # warm-up
    times = {"plain": [], "carrier": []}
    for _ in range(args.reps):
        for name, f in (("plain", plain_step), ("carrier", carrier_step)):
            f()
            for _ in range(args.block - 1):
                t = time.perf_counter(); f(); times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_train = {"plain": sum(p.numel() for p in plain.parameters() if p.requires_grad),
               "carrier": sum(p.numel() for p in carrier.model.parameters() if p.requires_grad)}
    print(f"model {args.model} ({lay.arch}, {lay.n_layers} layers), {args.dtype}, batch {args.batch} x {args.seq}, "
          f"{torch.get_num_threads()} threads, {args.reps} alternating blocks of {args.block} steps")
    for k in ("plain", "carrier"):
        print(f"  {k:<8} forward+backward: median {med[k]*1000:7.1f} ms  (min {min(times[k])*1000:7.1f}, max {max(times[k])*1000:7.1f}); "
              f"{n_train[k]:,} trainable parameters")
    ratio = med["carrier"] / med["plain"]
    print(f"carrier / plain SFT step time ratio: {ratio:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
