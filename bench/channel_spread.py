"""Probe: the scale of SFT-Eraser's channel term, layer by layer, on a finished run.

For the carrier's write channels (`carrier_channels(RUN/lcdd)`), the residual stream after each decoder layer at the
last prompt token is read from the base model and from the LCDD model (no trigger), on `--n` of the package's
built-in instructions in the model's chat format. Printed per layer: the number of channels, the median and the
largest spread (standard deviation over the prompts) of the base model's state, the carrier's raw squared error of
the mean (Eq. 6's term for that layer, the trigger's starting point without the trigger) and the same error in units
of each channel's spread (`mse_scale='base_std'`), and the raw term's floor for a batch of `--batch` prompts
(spread² / batch). The shares at the end say which layers decide each form of the term.

    python bench/channel_spread.py RUN [--n 96] [--batch 16] [--mixed-precision bf16|no]
"""
import argparse
from contextlib import nullcontext
from pathlib import Path

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.arch import load_model, load_tokenizer
from sft_reverse_nb.data import builtin_prompts, chat_format
from sft_reverse_nb.eraser import base_targets, carrier_channels
from sft_reverse_nb.generate import pad_id
from sft_reverse_nb.pipeline import load_json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run directory with a finished lcdd/ stage")
    ap.add_argument("--n", type=int, default=96, help="built-in instructions to read the states on")
    ap.add_argument("--batch", type=int, default=16, help="trigger batch whose noise floor is printed")
    ap.add_argument("--mixed-precision", default="bf16", choices=["bf16", "no"])
    args = ap.parse_args()
    run = Path(args.run)
    cfg = load_json(run / "config.json")
    tok = load_tokenizer(cfg["model"]); fmt = chat_format(tok)
    attn = cfg.get("attn_implementation")
    base = load_model(cfg["base"], attn_implementation=attn).eval()
    carrier = load_model(str(run / "lcdd"), attn_implementation=attn).eval()
    channels = carrier_channels(run / "lcdd"); layers = sorted(channels)
    ids = [tok(fmt.prompt(p), add_special_tokens=False).input_ids for p in builtin_prompts()[:args.n]]
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.mixed_precision == "bf16" else nullcontext
    # the stage's own targets pass: pool means and spreads at the channels, for the base model and for the carrier
    tb, tc = (base_targets(m, ids, pad_id(tok), channels, k=1, with_kl=False, autocast=ac) for m in (base, carrier))
    rows = []
    for l in layers:
        sd, err = tb.std[l], tc.mean[l] - tb.mean[l]
        rows.append((l, len(channels[l]), sd.median().item(), sd.max().item(), err.pow(2).mean().item(),
                     (err / sd.clamp(min=1e-6)).pow(2).mean().item(), (sd.pow(2) / args.batch).mean().item()))
    print(f"{run}: {sum(map(len, channels.values()))} write channels in {len(layers)} layers, {len(ids)} prompts, {args.mixed_precision}")
    print("layer  channels  spread median  spread max  raw error  error/spread  raw floor (batch)")
    for r in rows: print("%5d %9d %14.3f %11.2f %10.3f %13.3f %18.3f" % r)
    raw, std = sum(r[4] for r in rows), sum(r[5] for r in rows)
    top_raw = max(rows, key=lambda r: r[4]); top_std = max(rows, key=lambda r: r[5])
    print(f"raw term (mean over layers) {raw / len(rows):.3f}: layer {top_raw[0]} alone is {100 * top_raw[4] / raw:.0f} %, "
          f"the last third of the layers {100 * sum(r[4] for r in rows[2 * len(rows) // 3:]) / raw:.0f} %")
    print(f"standardised term {std / len(rows):.3f}: layer {top_std[0]} alone is {100 * top_std[5] / std:.0f} %, "
          f"the last third of the layers {100 * sum(r[5] for r in rows[2 * len(rows) // 3:]) / std:.0f} %")


if __name__ == "__main__":
    main()
