"""Benchmark: the attention kernel (`attn_implementation`) on the demo's three workloads, two kernels against each other
(`eager` against `sdpa` unless `--kernels A B` names others, e.g. `--kernels eager_grouped eager`).

Two copies of SmolLM2-135M-Instruct on CPU, loaded with `load_model(..., attn_implementation=...)`, run the same
inputs in alternating blocks (so machine noise hits both), bf16 autocast as the `cpu-smollm2` preset runs them:

- `trigger`: the SFT-Eraser step's shape -- 16 Fixed Response prompts in their chat format with a 20-token soft prompt
  in front and 16 answer tokens after, weights frozen, last-token states of every layer and the logits of the last 24
  positions, backward to the trigger only;
- `train`: a training step -- 8 of the same sequences, causal-LM loss, backward into every weight;
- `generate`: greedy decoding of 25 prompts, 64 new tokens, left-padded (`model.generate`);
- `decode` (only when `--workloads` names it): the evaluation's decoding -- 100 built-in prompts in one batch, up to 128
  new tokens, through the package's `generate` (rows leave the batch at their end-of-sequence token); one timed call per
  block and no warm-up call, and whether the two kernels gave the same tokens for every prompt.

Printed: each workload's median time per kernel, the ratio A/B per block pair (min/median/max) and the
largest logit difference between the two kernels on the padded batch in float32 (the choice changes rounding only).

    python bench/attention.py [--blocks 3] [--block 4] [--kernels A B] [--workloads trigger train generate decode]
"""
import argparse, statistics, time

import sft_reverse_nb                     # before torch: the package's OpenMP settings (02b_threads) apply, as in `sftr`
import torch

from sft_reverse_nb.arch import load_model, load_tokenizer
from sft_reverse_nb.data import builtin_prompts, chat_format
from sft_reverse_nb.generate import generate as package_generate, pad_left, pad_id, prefixed_inputs
from sft_reverse_nb.eraser import init_trigger, trigger_forward
from sft_reverse_nb.threads import openmp_summary, thread_settings


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks per kernel")
    ap.add_argument("--block", type=int, default=4, help="timed steps per block (one untimed step first)")
    ap.add_argument("--kernels", nargs=2, default=["eager", "sdpa"], metavar=("A", "B"), help="the two kernels; ratios are A/B")
    ap.add_argument("--workloads", nargs="+", default=["trigger", "train", "generate"], choices=["trigger", "train", "generate", "decode"])
    args = ap.parse_args()
    A, B = args.kernels

    tok = load_tokenizer("smollm2"); fmt = chat_format(tok); pad = pad_id(tok)
    models = {k: load_model("smollm2", attn_implementation=k) for k in (B, A)}
    prompts = builtin_prompts()[:25]
    ids = [tok(fmt.prompt(p), add_special_tokens=False).input_ids for p in prompts]
    answer = tok(" The quick brown fox jumps over the lazy dog while the band plays on and on", add_special_tokens=False).input_ids[:16]
    seqs = pad_left([x + answer for x in ids[:16]], pad)
    gen_in = pad_left(ids, pad)
    ac = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    tau = torch.nn.Parameter(init_trigger(models[B], 20))
    layers = list(range(models[B].config.num_hidden_layers))

    with torch.no_grad():                                                   # same logits up to rounding (float32, no autocast)
        lg = {k: m(**seqs).logits for k, m in models.items()}
    keep = seqs["attention_mask"].bool()
    diff = (lg[A][keep] - lg[B][keep]).abs().max().item()

    def trigger(m):
        m.requires_grad_(False)
        with ac(): st, out = trigger_forward(m, tau, seqs, layers, 24, torch.full((16,), len(answer)))
        tau.grad = None
        (sum(s.float().pow(2).mean() for s in st.values()) + out.float().log_softmax(-1).mean()).backward()

    def train(m):
        m.requires_grad_(True); m.train()
        batch = {k: v[:8] for k, v in seqs.items()}
        with ac(): loss = m(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
        loss.backward(); m.zero_grad(set_to_none=True); m.eval()

    def generate(m):
        with torch.no_grad(), ac():
            m.generate(**gen_in, max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=pad)

    dec_prompts, dec_ids = builtin_prompts()[-100:], {}
    def decode(m):
        with torch.no_grad(), ac():
            dec_ids[id(m)] = package_generate(m, tok, dec_prompts, fmt, max_new_tokens=128, batch_size=100, return_ids=True)

    print(f"OpenMP: {openmp_summary(thread_settings())}")
    print(f"SmolLM2-135M-Instruct, CPU {torch.get_num_threads()} threads, bf16 autocast; sequences {seqs['input_ids'].shape[1]} tokens "
          f"(+20 trigger), generation {len(ids)} prompts x 64 tokens")
    print(f"largest |logit difference| {A} vs {B}, float32, padded batch: {diff:.2e}")
    work = {"trigger": trigger, "train": train, "generate": generate, "decode": decode}
    for name in args.workloads:
        f, once = work[name], name == "decode"                    # decode: long enough to time one call, no warm-up
        times = {k: [] for k in models}; ratios = []
        for _ in range(args.blocks):
            block = {}
            for k, m in models.items():
                if not once: f(m)
                ts = []
                for _ in range(1 if once else args.block):
                    t = time.perf_counter(); f(m); ts.append(time.perf_counter() - t)
                times[k] += ts; block[k] = statistics.median(ts)
            ratios.append(block[A] / block[B])
        med = {k: statistics.median(v) for k, v in times.items()}
        r = sorted(ratios)
        print(f"  {name:>8}: {B} {med[B]:6.2f} s  {A} {med[A]:6.2f} s  {A}/{B} min {r[0]:.3f} median "
              f"{statistics.median(r):.3f} max {r[-1]:.3f} over {len(r)} block pairs")
        if once:
            a, b = (dec_ids[id(models[k])] for k in (A, B))
            print(f"            same tokens for {sum(x == y for x, y in zip(a, b))} of {len(a)} prompts ({sum(map(len, a))} / {sum(map(len, b))} tokens)")


if __name__ == "__main__":
    main()
