"""The package on a CUDA device, against the same computation on the CPU.

    python bench/cuda_check.py [--out DIR] [--families llama,qwen3,...]

1. Gate–weight equivalence on the GPU, for every tiny family: a carrier with all gates open computes the SFT model's
   logits, with all gates closed the base model's (float32, max abs difference printed).
2. The gated projection's backward on the GPU against the CPU: the loss and the gradients of the deltas and gate
   logits of one carrier forward+backward on the same batch (float32, largest relative difference printed).
3. The `tiny` preset end to end (SFT → LCDD → SFT-Eraser → evaluation) with `device` `cuda`, in float32 and
   with bf16 autocast, against the same run on the CPU: first and last training losses of each stage, carrier
   sparsity and the evaluation's rates (float32 should agree closely; the bf16 run only has to finish sanely).

Exit status 1 when a check fails; everything measured is printed and written to DIR/cuda_check.json. `--device cpu` is a dry
run of the script itself (CPU against CPU); as of the commit that added it, that dry run is all it has run, no GPU being available.
"""
import argparse, copy, json, math, sys, time
from pathlib import Path

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.arch import TINY_FAMILIES, tiny_model
from sft_reverse_nb.carrier import Carrier, perturbed_copy
from sft_reverse_nb.artefacts import read_metrics
from sft_reverse_nb.pipeline import run_pipeline

STAGE_METRICS = {"sft": "sft", "lcdd": "lcdd", "erase": "trigger"}     # stage -> the run subdirectory holding its metrics.jsonl


def equivalence(arch: str, dev: str) -> dict:
    base = tiny_model(arch, seed=0).to(dev).eval()
    sft = perturbed_copy(base, 0.05, seed=1).to(dev).eval()
    ids = torch.randint(0, base.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0)).to(dev)
    with torch.no_grad():
        want_sft, want_base = sft(ids).logits, base(ids).logits
        carrier = Carrier.attach(copy.deepcopy(sft), base)              # attach replaces the projections of the model it is given
        open_ = carrier.fill(10.0).model(ids).logits
        closed = carrier.fill(-10.0).model(ids).logits
    return {"open_vs_sft": (open_ - want_sft).abs().max().item(), "closed_vs_base": (closed - want_base).abs().max().item()}


def gradients(arch: str, dev: str) -> dict:
    out = {}
    for d in ("cpu", dev):
        base = tiny_model(arch, seed=0)
        sft = perturbed_copy(base, 0.05, seed=1)
        carrier = Carrier.attach(sft, base, seed=0)
        carrier.model.to(d); carrier.model.train()
        ids = torch.randint(0, base.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0)).to(d)
        loss = carrier.model(ids, labels=ids).loss
        loss.backward()
        grads = {f"delta{i}": p.grad.detach().cpu() for i, p in enumerate(carrier.delta_parameters())}
        grads.update({f"gate{i}": p.grad.detach().cpu() for i, p in enumerate(carrier.gate_parameters())})
        out[d] = (loss.item(), grads)
    (lc, gc), (lg, gg) = out["cpu"], out[dev]
    rel = max(((gg[k] - gc[k]).norm() / gc[k].norm().clamp_min(1e-12)).item() for k in gc)
    return {"loss_cpu": lc, "loss_cuda": lg, "max_rel_grad_diff": rel}


def pipeline(out: Path, dev: str, precision: str | None) -> dict:
    stages = {s: {"device": dev, **({"mixed_precision": precision} if precision else {})} for s in ("sft", "lcdd", "erase")}
    stages["eval"] = {"mixed_precision": precision} if precision else {}
    run = out/f"tiny-{dev.replace(':', '')}-{precision or 'fp32'}"
    t = time.time()
    res = run_pipeline(run, "tiny", overrides={"device": dev, **stages})
    losses = {s: [m["loss"] for m in read_metrics(run/d/"metrics.jsonl")] for s, d in STAGE_METRICS.items()}
    return {"seconds": round(time.time() - t, 1), **{f"{s}_loss_first_last": (l[0], l[-1]) for s, l in losses.items()},
            "sparsity": res["sparsity"], "rates": {c: v.get(res["metric"]) for c, v in res["conditions"].items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/cuda_check"); ap.add_argument("--families", default=",".join(TINY_FAMILIES))
    ap.add_argument("--device", default="cuda", help="the device checked against the CPU (cpu: a dry run of this script)")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available(): sys.exit("no CUDA device here: this check needs a GPU (or --device cpu for a dry run)")
    dev, out, ok = a.device, Path(a.out), True
    report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if dev.startswith("cuda") else "none (dry run)"}
    print(f"torch {torch.__version__}, {report['gpu']}")
    for arch in a.families.split(","):
        eq, gr = equivalence(arch, dev), gradients(arch, dev)
        good = eq["open_vs_sft"] < 1e-4 and eq["closed_vs_base"] < 1e-4 and gr["max_rel_grad_diff"] < 1e-3 and abs(gr["loss_cpu"] - gr["loss_cuda"]) < 1e-4
        ok &= good; report[arch] = {**eq, **gr, "ok": good}
        print(f"{arch:8s} open-vs-SFT {eq['open_vs_sft']:.2e}  closed-vs-base {eq['closed_vs_base']:.2e}  "
              f"loss cpu/cuda {gr['loss_cpu']:.6f}/{gr['loss_cuda']:.6f}  max rel grad diff {gr['max_rel_grad_diff']:.2e}  {'ok' if good else 'FAIL'}")
    for d, p in (("cpu", None), (dev, None), (dev, "bf16")):
        row = pipeline(out, d, p)
        report[f"pipeline-{d}-{p or 'fp32'}"] = row
        print(f"pipeline {d} {p or 'fp32'}: {json.dumps(row)}")
    cpu, gpu, bf = report["pipeline-cpu-fp32"], report[f"pipeline-{dev}-fp32"], report[f"pipeline-{dev}-bf16"]
    keys = [f"{s}_loss_first_last" for s in STAGE_METRICS]
    close = all(math.isclose(cpu[k][0], gpu[k][0], rel_tol=1e-3) for k in keys)
    sane = all(math.isfinite(x) for k in keys for x in bf[k])
    print(f"first losses cpu vs cuda fp32 within 1e-3: {close}; bf16 losses finite: {sane}")
    ok &= close and sane
    report["ok"] = ok
    out.mkdir(parents=True, exist_ok=True); (out/"cuda_check.json").write_text(json.dumps(report, indent=1))
    print("ALL OK" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__": main()
