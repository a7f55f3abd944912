"""Benchmark: the carrier's per-step cost that does not grow with the model's width, and where in the step its extra time lies.

Two measurements, plain SFT forward+backward against the carrier's (with the sparsity penalty), in one run,
alternating blocks of `--block` steps (the first step of a block is not timed), medians:

1. *Width-independent cost*: a random Llama with SmolLM2-135M's layout (30 layers, 9 query and 3 key/value
   heads, 7 projections per layer) at width 72, batch 1 x 8 tokens. Its matrix products take almost no
   time, so the carrier's extra time here is what it costs per step whatever the width: the Python of its
   autograd functions and straight-through gates, the penalty, the kernels' calls (and, with more than
   one thread, their parallel regions waking their threads). Measured at each of `--threads`.
2. *Where the extra time lies*, on SmolLM2-135M-Instruct (fp32, batch 8 x 64, the bare step of
   `bench/carrier_step.py`), without a profiler: the forward pass, the backward from its start until the
   logits' gradient is ready (the loss's `nll_loss` and `log_softmax` backward, which a torch.profiler
   trace can charge with hundreds of milliseconds in the carrier's step), and the rest of the backward.

`--mixed-precision bf16` runs both measurements under CPU bf16 autocast, as the `cpu-smollm2` preset trains.

    python bench/carrier_overhead.py [--threads 1 2] [--reps 10] [--block 4] [--no-smollm2] [--mixed-precision bf16]
"""
import argparse, contextlib, copy, statistics, time

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch
import torch.nn.functional as F

from sft_reverse_nb.arch import tiny_model
from sft_reverse_nb.carrier import Carrier, perturbed_copy

from sft_reverse_nb.sft import freeze_outside_projections

from carrier_step import workload   # the same model, plain SFT model and batch as the bare-step benchmark


AMP = [contextlib.nullcontext]               # the autocast context of every step (set from --mixed-precision)
PRECISION = ["fp32"]


def phases(model, ids, penalty=None) -> tuple[float, float, float]:
    "One forward+backward: seconds of the forward, of the backward until the logits' gradient, of the rest of the backward."
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    with AMP[0]():
        logits = model(input_ids=ids).logits
        mark = {}
        logits.register_hook(lambda g: mark.__setitem__("t", time.perf_counter()))
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))
        if penalty is not None: loss = loss + 1e-4 * penalty()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    return t1 - t0, mark["t"] - t1, t2 - mark["t"]


def alternate(steps: dict, reps: int, block: int) -> dict:
    "Median per phase of each kind of step, the kinds alternating in blocks."
    for f in list(steps.values()) * 2: f()
    out = {k: [] for k in steps}
    for _ in range(reps):
        for k, f in steps.items():
            f()
            for _ in range(block - 1): out[k].append(f())
    return {k: [statistics.median(x[i] for x in v) * 1000 for i in range(3)] for k, v in out.items()}


def plain_vs_carrier(plain, base, ids, reps: int, block: int) -> dict:
    "`alternate`'s medians for the plain model's step and the step of a carrier attached to a copy of it."
    car = Carrier.attach(copy.deepcopy(plain), base); car.model.train()
    return alternate({"plain": lambda: phases(plain, ids), "carrier": lambda: phases(car.model, ids, car.penalty)}, reps, block)


def width_independent(threads: int, reps: int, block: int):
    torch.set_num_threads(threads)
    base = tiny_model("llama", hidden_size=72, intermediate_size=96, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)
    plain = perturbed_copy(base, scale=0.02).train()
    freeze_outside_projections(plain)
    ids = torch.randint(0, base.config.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
    m = plain_vs_carrier(plain, base, ids, reps, block)
    p, c = sum(m["plain"]), sum(m["carrier"])
    print(f"width 72, 30 layers, batch 1 x 8, {PRECISION[0]}, {threads} thread(s): plain {p:6.1f} ms, carrier {c:6.1f} ms, "
          f"carrier - plain {c - p:+6.1f} ms per step")


def split(reps: int, block: int):
    base, plain, lay, ids = workload("smollm2", torch.float32, 8, 64)
    m = plain_vs_carrier(plain, base, ids, reps, block)
    print(f"SmolLM2-135M, {PRECISION[0]}, batch 8 x 64, {torch.get_num_threads()} threads, medians in ms:")
    print(f"  {'':<8} {'forward':>8} {'bwd to logits':>14} {'rest of bwd':>12} {'total':>8}")
    for k, v in m.items(): print(f"  {k:<8} {v[0]:8.0f} {v[1]:14.0f} {v[2]:12.0f} {sum(v):8.0f}")
    d = [c - p for c, p in zip(m["carrier"], m["plain"])]
    print(f"  {'extra':<8} {d[0]:+8.0f} {d[1]:+14.0f} {d[2]:+12.0f} {sum(d):+8.0f}   (carrier / plain {sum(m['carrier']) / sum(m['plain']):.3f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts for the width-independent measurement")
    ap.add_argument("--reps", type=int, default=10, help="blocks per kind of step")
    ap.add_argument("--block", type=int, default=4, help="consecutive steps per block (the first is not timed)")
    ap.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 split")
    ap.add_argument("--mixed-precision", choices=("no", "bf16"), default="no", help="bf16: every step under CPU bf16 autocast")
    args = ap.parse_args()
    if args.mixed_precision == "bf16":
        AMP[0], PRECISION[0] = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), "bf16 autocast"
    default = torch.get_num_threads()
    for t in args.threads: width_independent(t, args.reps, args.block)
    torch.set_num_threads(default)
    if not args.no_smollm2: split(max(3, args.reps // 2), args.block)


if __name__ == "__main__":
    main()
