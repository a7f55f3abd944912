"""Benchmark: a carrier on fused projections (Phi-3's qkv_proj / gate_up_proj) vs the same weights unfused, measured in one run.

A random Phi-3 model and its `unfused_twin` (a Llama model with the same weights, each fused weight cut into the paper's
separate projections; same logits bit for bit) are trained side by side: plain forward+backward of the projection weights
(embeddings, lm_head, norms frozen, as SFT trains) and the carrier's forward+backward (deltas + gate logits, penalty
included), with the gates open (start of LCDD) and mostly closed (logits around -0.5, end of LCDD). The four models
alternate in blocks of `--block` steps (the first of each block untimed) so machine noise hits all alike.

Printed: median step times, the ratios carrier / plain for each layout and fused / unfused for each step, whether the fused
CPU kernels handled the fused weights, and the step buffers (`_SCRATCH`) each layout holds against its projection weights.

    python bench/fused_projections.py [--d-model 256] [--d-ff 704] [--layers 4] [--batch 4] [--seq 64] [--reps 6] [--threads 1]
"""
import argparse, copy, statistics, time

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.arch import layout_of, tiny_model, unfused_twin
from sft_reverse_nb.carrier import _SCRATCH, Carrier, free_scratch, perturbed_copy
from sft_reverse_nb.kernels import cpu_kernels, fused_compose, kernel_status
from sft_reverse_nb.sft import freeze_outside_projections


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, default=256); ap.add_argument("--d-ff", type=int, default=704)
    ap.add_argument("--layers", type=int, default=4); ap.add_argument("--heads", type=int, default=8); ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4); ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--reps", type=int, default=6, help="blocks per model"); ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = tiny_model("phi3", seed=0, hidden_size=args.d_model, intermediate_size=args.d_ff, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=512, max_position_embeddings=max(256, args.seq))
    sft = perturbed_copy(base, scale=0.02)
    models = {"fused": (sft, base), "unfused": (unfused_twin(sft), unfused_twin(base))}
    ids = torch.randint(0, 512, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(): assert torch.equal(models["fused"][0](input_ids=ids).logits, models["unfused"][0](input_ids=ids).logits)

    steps, info = {}, {}
    for name, (s, b) in models.items():
        plain = copy.deepcopy(s).train(); lay = layout_of(plain)
        freeze_outside_projections(plain)
        info[name] = dict(modules=lay.modules, proj_bytes=sum(lay.projection(i, n).weight.numel() * 4 for i in range(lay.n_layers) for n in lay.modules))
        def plain_step(m=plain):
            m.zero_grad(set_to_none=True); m(input_ids=ids, labels=ids).loss.backward()
        steps[f"plain/{name}"] = plain_step
        for state, kw in (("open", {}), ("sparse", dict(init_mean=-0.5, init_std=0.5))):
            car = Carrier.attach(copy.deepcopy(s), b, **kw); car.model.train()
            def car_step(c=car):
                c.model.zero_grad(set_to_none=True); (c.model(input_ids=ids, labels=ids).loss + 1e-4 * c.penalty()).backward()
            steps[f"carrier-{state}/{name}"] = car_step
            if state == "sparse": info[name]["sparsity"] = car.sparsity()
        free_scratch(); steps[f"carrier-sparse/{name}"]()
        info[name]["scratch_bytes"] = sum(t.numel() * t.element_size() for t in _SCRATCH.values())

    # do the fused CPU kernels take the fused weights? (one compose of layer 0's qkv_proj, checked against torch)
    car = Carrier.attach(copy.deepcopy(sft), base, init_mean=-0.5)
    gm = car.layout.projection(0, "qkv_proj"); r, c = gm.hard_gates()
    out = torch.empty_like(gm.delta)
    used = cpu_kernels() is not None and fused_compose(gm.weight_base, gm.delta, r.contiguous(), c, out, (bool(r.all()), bool(c.all())))
    if used: assert torch.equal(out, gm.weight_base + torch.outer(r, c) * gm.delta)

    for f in steps.values(): f(); f()                                    # warm-up
    times = {k: [] for k in steps}
    for _ in range(args.reps):
        for k, f in steps.items():
            f()
            for _ in range(args.block - 1):
                t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"Phi-3 random model: {args.layers} layers, d_model {args.d_model}, d_ff {args.d_ff}, {args.heads}/{args.kv_heads} heads; "
          f"batch {args.batch} x {args.seq}, fp32, {torch.get_num_threads()} thread(s), {args.reps} alternating blocks of {args.block}")
    print(f"fused CPU kernels: {'used on qkv_proj (checked equal to torch)' if used else 'not used: ' + str(kernel_status()['reason'])}")
    for name in models:
        print(f"  {name:<8} modules {', '.join(info[name]['modules'])}; sparse-state sparsity {info[name]['sparsity']:.1%}; step buffers "
              f"{info[name]['scratch_bytes']/2**20:.2f} MiB = {info[name]['scratch_bytes']/info[name]['proj_bytes']:.2f} x the projection weights")
    for k in steps: print(f"  {k:<24} median {med[k]*1000:8.1f} ms  (min {min(times[k])*1000:7.1f}, max {max(times[k])*1000:7.1f})")
    for name in models:
        for state in ("open", "sparse"):
            print(f"ratio carrier-{state} / plain, {name:<8}: {med[f'carrier-{state}/{name}'] / med[f'plain/{name}']:.3f}")
    for k in ("plain", "carrier-open", "carrier-sparse"):
        print(f"ratio fused / unfused, {k:<15}: {med[f'{k}/fused'] / med[f'{k}/unfused']:.3f}")


if __name__ == "__main__":
    main()
