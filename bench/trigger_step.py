"""Benchmark: one SFT-Eraser trigger step vs a bare batched forward+backward, and vs a one-prompt-at-a-time loop.

Workload (issue 4, DESIGN.md §6): SmolLM2-135M-Instruct on CPU, 16 Fixed Response prompts in their chat format,
a 20-token trigger, weights frozen. Three steps on the same batch, alternating in blocks so machine noise hits all:

- `ours`: `sft_reverse_nb.eraser`'s step — forward with the trigger (hooks on the carrier layers, logits at the last
  k positions), Eqs. 6-8 (channel MSE, tail KL against precomputed base targets, L2), backward, clip, Adam, PGD;
- `bare`: the same forward (same inputs, `logits_to_keep=k`) with a trivial loss and a backward to the trigger only;
- `loop`: the same loss computed one prompt at a time (each prompt its own forward/backward, gradients accumulated,
  one Adam step), as a per-prompt implementation does;
- `shared`: our step with the shared head (`EraserConfig.share_prefix`, the default since it was added): the trigger and
  the tokens every prompt starts with (SmolLM2's system turn) run once at batch size 1, the rows attend to their cache.
  `ours` and `bare` give every row its own copy, as the stage did before.

Targets: ours / bare <= 1.10; loop / ours >= 2.0 (DESIGN.md: >= 1.7). Printed too: shared / ours.

    python bench/trigger_step.py [--run RUN] [--reps 6] [--mixed-precision bf16|no] [--answer-tokens 16]
"""
import argparse, statistics, time
from contextlib import nullcontext
from pathlib import Path

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.arch import load_model, layout_of
from sft_reverse_nb.data import builtin_prompts, chat_format
from sft_reverse_nb.arch import load_tokenizer
from sft_reverse_nb.eraser import (EraserTargets, base_targets, carrier_channels, greedy_answers, init_trigger, project_ball,
                                   tail_mask, trigger_forward, trigger_loss)
from sft_reverse_nb.generate import pad_left, prefixed_inputs, pad_id, shared_head


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a run directory with lcdd/ (its merged model and carrier channels); default: SmolLM2 with every 8th channel")
    ap.add_argument("--reps", type=int, default=6, help="blocks per variant")
    ap.add_argument("--block", type=int, default=3, help="consecutive steps per block (the first is not timed)")
    ap.add_argument("--n-prompts", type=int, default=16)
    ap.add_argument("--n-tokens", type=int, default=20)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--variants", nargs="+", default=["ours", "bare", "loop", "shared"], choices=["ours", "bare", "loop", "shared"],
                    help="which steps to time (ratios are printed for those present)")
    ap.add_argument("--answer-tokens", type=int, default=0, help="also teacher-force the base model's greedy answer (this many tokens) after each prompt, "
                    "as EraserConfig.answer_tokens does (the demo: 16)")
    ap.add_argument("--mixed-precision", default="bf16", choices=["bf16", "no"])
    args = ap.parse_args()

    tok = load_tokenizer("smollm2"); fmt = chat_format(tok)
    if args.run:
        model = load_model(str(Path(args.run)/"lcdd")); base = load_model("smollm2")
        channels = carrier_channels(Path(args.run)/"lcdd")
    else:
        model = base = load_model("smollm2")
        lay = layout_of(model); channels = {i: list(range(0, lay.d_model, 8)) for i in range(lay.n_layers)}
    model.requires_grad_(False).eval()
    prompts = builtin_prompts()[:args.n_prompts]
    ids = [tok(fmt.prompt(p), add_special_tokens=False).input_ids for p in prompts]
    pad = pad_id(tok)
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.mixed_precision == "bf16" else nullcontext
    answers = greedy_answers(base, tok, prompts, fmt, args.answer_tokens, autocast=ac)
    rows, offset = [x + a for x, a in zip(ids, answers)], torch.tensor([len(a) for a in answers])
    width = args.k + max(map(len, answers))
    targets = base_targets(base, ids, pad, channels, args.k, 16, autocast=ac, answers=answers)
    layers = sorted(channels)
    tau = torch.nn.Parameter(init_trigger(model, args.n_tokens))
    opt = torch.optim.Adam([tau], lr=3e-3)
    enc = pad_left(rows, pad)
    idx = torch.arange(len(ids))
    h = shared_head(rows, [min(args.k, len(x)) + len(a) for x, a in zip(ids, answers)])
    tail, head = pad_left([r[h:] for r in rows], pad), torch.tensor(rows[0][:h])

    def step(enc, head=None):
        with ac(): st, lg = trigger_forward(model, tau, enc, layers, width, offset, head=head)
        loss, _ = trigger_loss(st, lg, tau, targets, idx, channels)
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_([tau], 1.0); opt.step(); project_ball(tau.data, 1.0)

    def ours(): step(enc)
    def shared(): step(tail, head)

    def bare():
        with ac():
            out = model(**prefixed_inputs(model, enc["input_ids"], enc["attention_mask"], tau), logits_to_keep=width)
        tau.grad = None; out.logits.float().pow(2).mean().backward()

    def loop():
        opt.zero_grad(set_to_none=True)
        for i in range(len(ids)):
            one = pad_left([rows[i]], pad)
            t1 = EraserTargets({l: targets.mean[l] for l in layers}, targets.logp[i:i + 1], targets.tail[i:i + 1])
            with ac(): st, lg = trigger_forward(model, tau, one, layers, width, offset[i:i + 1])
            loss, _ = trigger_loss(st, lg, tau, t1, torch.tensor([0]), channels)
            (loss / len(ids)).backward()
        torch.nn.utils.clip_grad_norm_([tau], 1.0); opt.step(); project_ball(tau.data, 1.0)

    variants = {k: f for k, f in {"ours": ours, "bare": bare, "loop": loop, "shared": shared}.items() if k in args.variants}
    for f in variants.values(): f()                                       # warm-up
    times = {k: [] for k in variants}
    for _ in range(args.reps):
        for name, f in variants.items():
            f()
            for _ in range(args.block - 1):
                t = time.perf_counter(); f(); times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"SmolLM2-135M-Instruct, CPU {torch.get_num_threads()} threads, {args.mixed_precision}, {len(ids)} prompts "
          f"(max {max(map(len, ids))} tokens, {h} shared, answers of {args.answer_tokens}) + {args.n_tokens}-token trigger, {sum(map(len, channels.values()))} channels in {len(channels)} layers")
    for k, v in med.items(): print(f"  {k:>5}: median {1000 * v:8.1f} ms over {len(times[k])} steps")
    for a, b, note in (("ours", "bare", "(target <= 1.10)"), ("loop", "ours", "(target >= 2.0)"),
                       ("shared", "ours", "(the shared head's step against every row carrying its own copy)")):
        if a in med and b in med: print(f"ratio {a}/{b} = {med[a] / med[b]:.3f}   {note}")

if __name__ == "__main__":
    main()
