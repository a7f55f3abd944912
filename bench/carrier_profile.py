"""Profile: where the gated (carrier) training step spends the time that a plain SFT step does not.

Workload (DESIGN.md §6): SmolLM2-135M-Instruct on CPU, fp32, batch 8 x 64 tokens, embeddings, lm_head and
norms frozen. One *training step* is zero_grad, forward, backward and the optimiser step(s): plain SFT
trains the projection weights with AdamW; the carrier trains the deltas with AdamW and the gate logits
with SGD, and adds the sparsity penalty. The carrier is timed in two gate states: every gate open (the
start of an LCDD run) and about 80 % of the gates closed (its end).

The carrier's own work is timed by wrapping the functions that do it (wall clock, summed over a step):
- composition: `W_base + (r c^T) * Delta`, the forward's and the backward's (for dL/dx) in two rows,
- gate gradients: `G_W * Delta` reduced to dL/dr and dL/dc, and `G_W` masked into dL/dDelta, in one pass,
- gate values: the logits' hard gates with their straight-through surrogate (forward side only),
- optimiser: the optimiser step(s), for both models.
What is left of the carrier step beyond the plain one (matrix products are the same in both) is listed
as "rest" (autograd bookkeeping, the penalty, the surrogate's backward). Plain and carrier steps alternate
in blocks of `--block` (the first step of a block is not timed); medians over the timed steps.
`--mixed-precision bf16` runs every step under CPU bf16 autocast, as the `cpu-smollm2` preset trains.

    python bench/carrier_profile.py [--blocks 6] [--block 3] [--threads 0] [--mixed-precision bf16]
"""
import argparse, contextlib, copy, statistics, time
from collections import defaultdict

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

import sft_reverse_nb.carrier as carrier_mod
import sft_reverse_nb.gates as gates_mod
from sft_reverse_nb.carrier import Carrier
from sft_reverse_nb.train import adamw

from carrier_step import workload          # the same model, plain SFT model and batch as the bare-step benchmark

CLOCK: dict = defaultdict(float)
PHASE = ["forward"]                          # which pass the composition being timed belongs to


def timed(name, f):
    "`f` with its wall time added to CLOCK[name]."
    def g(*a, **k):
        t = time.perf_counter()
        try: return f(*a, **k)
        finally: CLOCK[name] += time.perf_counter() - t
    return g


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=6, help="blocks per model and state")
    ap.add_argument("--block", type=int, default=3, help="consecutive steps per block (the first is not timed)")
    ap.add_argument("--closed", type=float, default=0.8, help="fraction of gates closed in the 'closed' state")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--mixed-precision", choices=("no", "bf16"), default="no", help="bf16: every step under CPU bf16 autocast")
    args = ap.parse_args()
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.mixed_precision == "bf16" else contextlib.nullcontext
    if args.threads: torch.set_num_threads(args.threads)

    base, plain, lay, ids = workload("smollm2", torch.float32, 8, 64)
    carriers = {"open": Carrier.attach(copy.deepcopy(plain), base), "closed": Carrier.attach(copy.deepcopy(plain), base)}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for b in carriers["closed"].banks:
            for p in b.parameters(): p.copy_(torch.where(torch.rand(p.shape, generator=g) < args.closed, -1.0, 1.0))

    # the wrapped functions (module globals: the callers look them up at call time)
    compose = carrier_mod._compose
    carrier_mod._compose = lambda *a, **k: timed(f"composition ({PHASE[0]})", compose)(*a, **k)
    backward = carrier_mod.GatedLinearFn.backward
    def backward_phase(ctx, gy):
        PHASE[0] = "backward"
        try: return backward(ctx, gy)
        finally: PHASE[0] = "forward"
    carrier_mod.GatedLinearFn.backward = staticmethod(backward_phase)
    carrier_mod._gate_grads = timed("gate gradients", carrier_mod._gate_grads)
    gates_mod.GateBank.gate = timed("gate values", gates_mod.GateBank.gate)

    opt_plain = adamw([p for p in plain.parameters() if p.requires_grad], lr=1e-6)
    def plain_step():
        plain.zero_grad(set_to_none=True)
        with amp(): loss = plain(input_ids=ids, labels=ids).loss
        loss.backward()
        timed("optimiser", opt_plain.step)()

    def carrier_step(c):
        opt_d, opt_g = adamw(c.delta_parameters(), lr=1e-6), torch.optim.SGD(c.gate_parameters(), lr=1e-6)   # as LCDD binds them
        def step():
            c.model.zero_grad(set_to_none=True)
            with amp(): loss = c.model(input_ids=ids, labels=ids).loss + 1e-4 * c.penalty()
            loss.backward()
            timed("optimiser", lambda: (opt_d.step(), opt_g.step()))()
        return step

    kinds = {"plain": plain_step, "carrier, gates open": carrier_step(carriers["open"]),
             f"carrier, {args.closed:.0%} closed": carrier_step(carriers["closed"])}
    for c in carriers.values(): c.model.train()
    for f in kinds.values(): f(); f()                                                    # warm-up
    steps, parts = {k: [] for k in kinds}, {k: defaultdict(list) for k in kinds}
    for _ in range(args.blocks):
        for k, f in kinds.items():
            f()
            for _ in range(args.block - 1):
                CLOCK.clear(); t = time.perf_counter(); f(); steps[k].append(time.perf_counter() - t)
                for name, v in CLOCK.items(): parts[k][name].append(v)
    med = {k: statistics.median(v) for k, v in steps.items()}
    names = ("composition (forward)", "composition (backward)", "gate gradients", "gate values", "optimiser")
    precision = "fp32" if args.mixed_precision == "no" else "fp32 weights, bf16 autocast"
    print(f"SmolLM2-135M ({lay.n_layers} layers), {precision}, batch 8 x 64, {torch.get_num_threads()} threads, "
          f"{args.blocks} alternating blocks of {args.block} steps; medians in ms\n")
    print("| | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    print("| training step | " + " | ".join(f"{med[k]*1000:.0f}" for k in kinds) + " |")
    print("| ratio to plain | " + " | ".join(f"{med[k]/med['plain']:.3f}" for k in kinds) + " |")
    for n in names:
        print(f"| {n} | " + " | ".join(f"{statistics.median(parts[k][n])*1000:.0f}" if parts[k][n] else "–" for k in kinds) + " |")
    for k in kinds:
        if k == "plain": continue
        own = sum(statistics.median(parts[k][n]) for n in names[:4] if parts[k][n])
        opt_extra = statistics.median(parts[k]["optimiser"]) - statistics.median(parts["plain"]["optimiser"])
        rest = med[k] - med["plain"] - own - opt_extra
        print(f"\n{k}: extra {1000*(med[k]-med['plain']):.0f} ms over plain = composition + gate gradients + gate values "
              f"{1000*own:.0f} + optimiser {1000*opt_extra:+.0f} + rest {1000*rest:+.0f}")


if __name__ == "__main__":
    main()
