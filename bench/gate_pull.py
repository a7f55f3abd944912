"""Diagnostic: the task gradient's pull on each gate of a finished LCDD carrier, against the penalty's push λ·w.

One SGD step moves gate logit θ_i by -gate_lr · gate_scale · σ'(θ_i) · (∂ℓ/∂g_i + λ·w), λ the logged multiplier (λ₀/gate_scale
at the start; 06_lcdd, "The scale of the gates' task gradient"). This script loads RUN's SFT model and the carrier in RUN/lcdd (gates and deltas as trained), takes
the task loss LCDD constrains (the run's `lcdd.budget`: cross-entropy, or the divergence to the SFT model) over the first
`--steps` optimiser steps of the stage's own batches, with the deltas held, and prints the quantiles of |∂ℓ/∂g_i| for the
closed and the open gates, the share whose pull would open them (∂ℓ/∂g_i < 0), and the λ the run ended with (the logged
λ, which is λ/gate_scale: on the pull's scale). With `gate_scale` s a gate whose pull −∂ℓ/∂g_i exceeds λ₀/s holds against the
initial push: choosing s so that λ₀/s sits among the pull's high quantiles lets the task choose which gates close.

    python bench/gate_pull.py RUN [--steps 4]
"""
import argparse, copy, json
from pathlib import Path

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.carrier import Carrier
from sft_reverse_nb.evaluation import _autocast
from sft_reverse_nb.lcdd import LCDDConfig, LCDDStage
from sft_reverse_nb.pipeline import RunModels, build_task, config_format, config_tokenizer, off_task_exclusions
from sft_reverse_nb.train import ExampleBatches

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("run"); p.add_argument("--steps", type=int, default=4)
a = p.parse_args()
run = Path(a.run); cfg = json.loads((run/"config.json").read_text())
lc = LCDDConfig(**cfg["lcdd"])
tok = config_tokenizer(cfg); task = build_task(cfg["task"])
models = RunModels(run, cfg)
base, sft = models.model("base"), models.model("sft")
stage = LCDDStage(sft, base, tok, task, lc, config_format(cfg, tok), off_task_exclusions(cfg))   # its `loss` is the budgeted loss the run trained on
stage.reference, stage.shares = (copy.deepcopy(sft).eval() if lc.divergence() else None), []   # before the carrier attaches to `sft` in place
carrier = Carrier.load_run(run/"lcdd", sft, base)
for d in carrier.delta_parameters(): d.requires_grad_(False)
data = ExampleBatches(stage.examples, lc, tok.pad_token_id, "lcdd")
for step in range(a.steps):
    for b, n in data(step, "cpu"):
        with _autocast(carrier.model, lc.mixed_precision): share = stage.loss(carrier.model, (b, n))
        (share / a.steps).backward()
gates = carrier.gate_parameters()
theta = torch.cat([g.detach().flatten() for g in gates])
slope = torch.sigmoid(theta) * (1 - torch.sigmoid(theta))
pull = torch.cat([g.grad.flatten() for g in gates]) / slope          # ∂ℓ/∂g_i: the STE's ∂ℓ/∂θ_i is ∂ℓ/∂g_i · σ'(θ_i)
qs = torch.tensor([0.1, 0.5, 0.9, 0.99])
print(f"{run}: {len(theta):,} gates, {lc.budget} budget, {a.steps} steps of the stage's batches; "
      f"gate_lr {lc.gate_lr}, gate_scale {lc.gate_scale}, lambda0 {lc.lambda0}")
for name, m in (("closed", theta <= 0), ("open", theta > 0)):
    v = pull[m]
    q = torch.quantile(v.abs()[torch.randperm(len(v), generator=torch.Generator().manual_seed(0))[:100_000]], qs).tolist()
    print(f"  {name:6} {int(m.sum()):>7,}: |dl/dg| 10/50/90/99 %: " + " / ".join(f"{x:.2e}" for x in q)
          + f"; pull to open (dl/dg < 0): {(v < 0).float().mean():.1%}")
lam = models.record("lcdd").get("lambda")
if lam is not None: print(f"  final lambda {lam:.3g}: the penalty's push per gate at full warm-up, on the pull's scale (the gate logits move by "
                          f"gate_lr x gate_scale x sigma'(theta) x (dl/dg + lambda) per step)")
