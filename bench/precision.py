"""Benchmark: what bf16 autocast costs on this CPU against float32, and what the package computes in.

On a CPU with bf16 hardware (AVX512-BF16, AMX) bf16 autocast is the faster path; on one without it oneDNN
emulates bf16 and a training step becomes many times slower. This script times a forward + backward pass of
SmolLM2-135M-Instruct (batch --batch x --tokens random tokens) in float32 and under bf16 autocast, in one
process, after one warm-up step each, and prints the medians, their ratio and what `mixed_precision='bf16'`
computes in on this machine (`sft_reverse_nb.precision`).

    python bench/precision.py [--batch 8] [--tokens 32] [--steps 2]
"""
import argparse, statistics, time
import sft_reverse_nb                      # noqa: F401  (the package's thread settings before torch loads)
import torch
from sft_reverse_nb.arch import load_model
from sft_reverse_nb.precision import cpu_precision


def step_time(model, ids, bf16: bool) -> float:
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward(); model.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8); ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per precision (after one warm-up)")
    a = ap.parse_args(argv)
    cpu = cpu_precision()
    print(f"CPU: {cpu['capability']}, bf16 hardware: {cpu['bf16_native']}; mixed_precision='bf16' computes in: {cpu['bf16_runs_as']} "
          f"(threads: {torch.get_num_threads()})")
    model = load_model("smollm2").train()
    ids = torch.randint(0, model.config.vocab_size, (a.batch, a.tokens), generator=torch.Generator().manual_seed(0))
    med = {}
    for name, bf16 in (("float32", False), ("bf16 autocast", True)):
        step_time(model, ids, bf16)                                   # warm-up
        ts = [step_time(model, ids, bf16) for _ in range(a.steps)]
        med[name] = statistics.median(ts)
        print(f"{name:14s} forward+backward {a.batch} x {a.tokens}: median {med[name]:.2f} s  (steps: {', '.join(f'{t:.2f}' for t in ts)})", flush=True)
    print(f"ratio bf16 autocast / float32: {med['bf16 autocast'] / med['float32']:.2f}")


if __name__ == "__main__": main()
