"""Selection check: a run's triggers on a development split, never on the held-out evaluation prompts.

The development split is made of the task's *training* prompts that lie outside the trigger's prompt pool for every
seed in `--pool-seeds` (the pool is `trigger_pool`, as `EraseStage` draws it),
shuffled with `--split-seed` and cut at `--n`. The held-out evaluation prompts are never read. Every trigger is
evaluated on the run's LCDD model exactly as `sftr eval` evaluates `trig`: greedy, the task's `max_new_tokens`, the
run's `eval.batch_size` and `eval.mixed_precision`, the task's keyword judge.

Printed, per trigger: its behaviour rate on the split, its best loss and step, and the split prompts that still show
the behaviour (with their token counts). Where the task marks harmful training prompts (Safety), the rate is also split
into harmful prompts (refusals left) and benign ones (over-refusal). With `--no-trigger`, the same for the base, SFT and
LCDD models without a trigger, so the trigger's rate has its two ends on the same prompts. With `--kl`, also the KL
triad on the split, as `sftr eval` computes it on the held-out prompts (the SFT model's greedy answers to the split prompts as references, the run's `eval` settings).
With `--nll` (needs `--prompt-file`), also each condition's reference NLL on the split: the mean NLL per token of the
file's own answers to the split instructions, teacher-forced, as `sftr eval` computes `ref_nll` on its held-out
references; the utility targets (@LCDD against @SFT, @Trig against @Base) can then be read off the split too.
With `--prompt-file FILE` (an Alpaca-style file), the split is drawn from that file's input-free instructions instead,
less the task's training and evaluation prompts and everything the evaluation's `eval.references` holds out (the
reference pairs and the instructions of the style judge's ordinary answers): for a task evaluated on another
distribution than it trains on (Shakespeare: trained on dialogue lines, evaluated on Alpaca instructions). Where the
task has offline scorers (Shakespeare's style classifier), their mean is printed beside the keyword rate. A file of
harmful instructions (`../shared/data/safety/advbench.json`) gives Safety a split of harmful prompts that neither
training nor evaluation uses: what the carrier keeps of the refusals there (`--no-trigger`, no trigger needed).
Settings such as the trigger's step count are chosen on this split, then measured once on the held-out prompts by
`sftr eval`.

    python bench/trigger_dev.py RUN [TRIGGER_DIR ...] [--n 100] [--pool-seeds 0 1 2] [--split-seed 1234] [--kl] [--no-trigger] [--prompt-file FILE [--nll]]

TRIGGER_DIR is relative to RUN (default: `trigger` if the run has one), e.g. `x/s1` for `sftr erase RUN --seed 1 --name x/s1`.
"""
import argparse, random, time
from collections import Counter
from pathlib import Path

import sft_reverse_nb                      # noqa: F401  (before torch: the package's OpenMP and allocator settings apply, as in `sftr`)
import torch

from sft_reverse_nb.artefacts import load_json
from sft_reverse_nb.data import load_records
from sft_reverse_nb.data import get_task
from sft_reverse_nb.eraser import EraserConfig, trigger_pool
from sft_reverse_nb.evaluation import KL_BEFORE_TRIGGER, KL_TRIAD, EvalConfig, generate_condition, kl_benchmark, kl_reference_set, reference_nll
from sft_reverse_nb.pipeline import RunModels, build_task, config_format, config_tokenizer, judged_inputs, reference_sets


def dev_split(task, n_prompts: int, pool_seeds, split_seed: int, n: int) -> list[str]:
    "Training prompts outside the trigger pool of every seed in `pool_seeds`, shuffled with `split_seed`, the first `n`."
    prompts = get_task(task.task).trigger_prompts(task)
    pooled = {i for s in pool_seeds for i in trigger_pool(len(prompts), n_prompts, s)}
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(split_seed)).tolist()
    dev = [prompts[i] for i in order if i not in pooled][:n]
    held = set(task.eval_prompts)
    assert not held & set(dev), "a development prompt is also a held-out evaluation prompt"
    if len(dev) < n: raise SystemExit(f"only {len(dev)} training prompts lie outside the pools; lower --n or use fewer --pool-seeds")
    return dev


def instruction_rows(path) -> list[tuple[str, str]]:
    "(instruction, answer) of every input-free row of the Alpaca-style file `path`, both stripped, in file order."
    return list((r["instruction"].strip(), str(r.get("output", "")).strip()) for r in load_records(path) if not str(r.get("input") or "").strip())


def file_answers(path, prompts) -> list[tuple[str, str]]:
    "The (instruction, answer) pairs of the Alpaca-style file `path` for those of `prompts` whose first input-free row there has a non-empty answer, in their order: `--nll`'s references."
    first = {}
    for q, a in instruction_rows(path): first.setdefault(q, a)
    missing = [p for p in prompts if p not in first]
    if missing: raise SystemExit(f"{len(missing)} split instructions are not input-free instructions of {path}, e.g. {missing[0][:60]!r}")
    return [(p, first[p]) for p in prompts if first[p]]


def file_split(task, refs, path, split_seed: int, n: int) -> list[str]:
    "Input-free instructions of the Alpaca-style file `path`, less the task's prompts and the evaluation's `refs` (`reference_sets`: its held-out pairs and the instructions of its ordinary answers), shuffled with `split_seed`, the first `n`."
    held, ordinary = refs[0], set(refs[1])
    skip = {p for p, _ in task.train} | set(task.eval_prompts) | {q for q, _ in held}
    dev = list(dict.fromkeys(q for q, a in instruction_rows(path) if q not in skip and a not in ordinary))
    random.Random(split_seed).shuffle(dev)
    if len(dev) < n: raise SystemExit(f"only {len(dev)} instructions of {path} are outside the task's prompts and the evaluation's references; lower --n")
    return dev[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("triggers", nargs="*", help="trigger directories inside RUN (default: trigger, if the run has one)")
    ap.add_argument("--n", type=int, default=100, help="development prompts")
    ap.add_argument("--pool-seeds", type=int, nargs="+", default=[0, 1, 2], help="trigger seeds whose pools the split avoids")
    ap.add_argument("--split-seed", type=int, default=1234)
    ap.add_argument("--kl", action="store_true", help="also the KL triad on the split (the SFT model's greedy answers as references)")
    ap.add_argument("--no-trigger", action="store_true", help="also the rates of the base, SFT and LCDD models without a trigger")
    ap.add_argument("--nll", action="store_true", help="also each condition's reference NLL on the split (the prompt file's own answers, teacher-forced)")
    ap.add_argument("--prompt-file", type=Path, help="draw the split from this Alpaca-style file's instructions instead of the training prompts")
    a = ap.parse_args()
    if a.nll and not a.prompt_file: raise SystemExit("--nll reads the reference answers from the prompt file; pass --prompt-file")
    triggers = a.triggers or (["trigger"] if (a.run/"trigger"/"trigger.json").exists() else [])
    if not triggers and not (a.no_trigger or a.kl): raise SystemExit(f"{a.run} has no trigger/; name a trigger directory or pass --no-trigger")
    cfg = load_json(a.run/"config.json")
    task = build_task(cfg["task"])
    ecfg, vcfg = EraserConfig.from_dict(cfg.get("erase", {})), EvalConfig.from_dict(cfg.get("eval", {}))
    ref_sets = reference_sets(task, vcfg)                              # the evaluation's own split of its references, read once
    prompts = (file_split(task, ref_sets, a.prompt_file, a.split_seed, a.n) if a.prompt_file
               else dev_split(task, ecfg.n_prompts, a.pool_seeds, a.split_seed, a.n))
    answers = file_answers(a.prompt_file, prompts) if a.nll else None
    if answers is not None: print(f"reference NLL on the {len(answers)} split instructions with an answer in {a.prompt_file}")
    tok = config_tokenizer(cfg); fmt = config_format(cfg, tok)
    models = RunModels(a.run, cfg, "cpu", False, tok)                # checks every trigger against the run's recorded weights
    spec = get_task(task.task)
    max_new = vcfg.max_new_tokens or spec.max_new_tokens
    where = f"instructions of {a.prompt_file}" if a.prompt_file else f"training prompts outside the pools of seeds {a.pool_seeds}"
    print(f"{len(prompts)} development prompts ({where}); {spec.metric}, greedy, {max_new} new tokens")
    scorers = judged_inputs(task, vcfg, a.n, ref_sets)["scorers"]            # the evaluation's offline scorers (Shakespeare: the style classifier)
    flags = (dict(zip((p for p, _ in task.train), task.extra["harmful"]))          # a file's prompts are not training prompts: no flags
             if task.extra.get("harmful") and not a.prompt_file else None)

    def rates(cond):
        ids = generate_condition(cond, tok, prompts, fmt, max_new, vcfg.batch_size, vcfg.mixed_precision, return_ids=True)
        texts = [tok.decode(x, skip_special_tokens=True).strip() for x in ids]
        m = spec.metrics(texts)                                             # the rate, and what shows a collapsed model
        line = f"{spec.metric} {m[spec.metric]:.3f}"
        for name, judge in scorers.items():
            scores = judge(prompts, texts)
            line += f"; {name} {sum(scores) / len(scores):.3f}"
        if flags:                             # Safety: refusals left on harmful prompts, over-refusal on benign ones
            for name, want in (("harmful", True), ("benign", False)):
                sub = [t for p, t in zip(prompts, texts) if flags[p] == want]
                if sub: line += f"; {name} {spec.rate(sub):.3f} (n={len(sub)})"
        if answers:
            line += f"; ref NLL {reference_nll(cond.model, tok, answers, cond.trigger, fmt, vcfg.kl_batch_size, vcfg.mixed_precision):.3f}"
        line += f"; {m['mean_words']:.1f} words per answer, {m['distinct_answers']} distinct"
        most, count = Counter(texts).most_common(1)[0]
        if count > 1: line += f"; {count} answers are {most[:40]!r}"
        return texts, line

    if a.no_trigger:
        for n in ("base", "sft", "lcdd"): print(f"{n} (no trigger): {rates(models.condition(n))[1]}")
    if a.kl:                                  # references and the trigger-free pairs once; per trigger only the pairs with it
        conds = {n: models.condition(n) for n in ("base", "sft", "lcdd")}
        sft_ids = generate_condition(conds["sft"], tok, prompts, fmt, max_new, vcfg.batch_size, vcfg.mixed_precision, return_ids=True)
        kl_prompts, refs = kl_reference_set(conds, tok, prompts, sft_ids, fmt, vcfg, max_new)
        kl_args = (tok, kl_prompts, refs)
        kl_kw = dict(fmt=fmt, batch_size=vcfg.kl_batch_size, mixed_precision=vcfg.mixed_precision)
        kl = kl_benchmark(conds, *kl_args, pairs=KL_TRIAD + KL_BEFORE_TRIGGER, **kl_kw)
        print("KL on the split without a trigger: " + ", ".join(f"{k} {v:.4g}" for k, v in kl.items()))
    for d in triggers:
        cond = models.condition(f"lcdd+{d}")
        t0 = time.perf_counter()
        texts, line = rates(cond)
        meta = load_json(a.run/d/"trigger.json")
        shows = sorted((len(tok(p, add_special_tokens=False).input_ids), p) for p, t in zip(prompts, texts) if spec.shows(t))
        print(f"{d}: {line}  (best loss {meta['best_loss']:.4g} at step {meta['best_step']}, "
              f"{meta['steps']} steps; {time.perf_counter() - t0:.0f} s)")
        for n_tok, p in shows: print(f"    {n_tok:3d} tokens  {p}")
        if a.kl:
            kl = kl_benchmark(conds | {"trig": cond}, *kl_args, pairs=[pq for pq in KL_TRIAD if "trig" in pq], **kl_kw)
            print("    KL on the split: " + ", ".join(f"{k} {v:.4g}" for k, v in kl.items()))


if __name__ == "__main__":
    main()
