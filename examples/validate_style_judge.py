"""Validate the offline Shakespeare style judge (nbs/04c_judges.ipynb) on the development data.

Trains the style classifier four ways — the first 2,400 task pairs only, the whole training split, the whole split plus 2,000
ordinary Alpaca answers (the default judge), and the default judge with contractions kept as written (the judge before
`expand_contractions`) — and reports accuracy and AUC on the corpus's held-out `valid` split, the false-positive rate
(score >= 0.5) on other Alpaca reference answers and on the held-out modern lines that use a modern contraction, written out
("I'm" -> "I am"); with --base-answers N also on N greedy answers of the base SmolLM2-135M-Instruct to held-out Alpaca
instructions (slow on CPU).

    python examples/validate_style_judge.py [--base-answers 50] [--json OUT.json]
"""
import argparse, json, tempfile
from pathlib import Path
from sft_reverse_nb.data import dev_data_dir, read_parallel, shakespeare
from sft_reverse_nb.judges import expand_contractions, has_contraction, reference_split, style_classifier, style_pairs, style_validation


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-answers", type=int, default=0, help="also score N base-model answers (generates with SmolLM2 on CPU)")
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args()
    sd = dev_data_dir()
    task = shakespeare(sd/"shakespeare", n_train=2400, n_eval=60)
    valid = read_parallel(sd/"shakespeare"/"valid.modern", sd/"shakespeare"/"valid.original")
    held, answers = reference_split(sd/"alpaca"/"alpaca_5000.json", n_heldout=100, n_ordinary=3000)
    ordinary, other = answers[:2000], answers[2000:]
    base = []
    if args.base_answers:
        from sft_reverse_nb.pipeline import config_model, config_tokenizer, config_format
        from sft_reverse_nb.generate import generate
        cfg = {"base": "smollm2", "dtype": "float32"}
        tok = config_tokenizer(cfg); model = config_model("smollm2", cfg)
        base = generate(model, tok, [p for p, _ in held[:args.base_answers]], fmt=config_format(cfg, tok), max_new_tokens=64, batch_size=10)
    contracted = [m for m, _ in valid if has_contraction(m)]
    expanded = [expand_contractions(m) for m in contracted]
    cache = Path(tempfile.mkdtemp())
    rows = {}
    for name, pairs, extra, settings in (("2,400 task pairs", task.train, (), None), ("whole training split", style_pairs(task), (), None),
                                         ("whole split + 2,000 ordinary answers (default)", style_pairs(task), ordinary, None),
                                         ("default, contractions kept", style_pairs(task), ordinary, {"expand_contractions": False})):
        clf = style_classifier(pairs, extra, settings, cache=cache)
        v = style_validation(clf, [o for _, o in valid], [m for m, _ in valid], other)
        v["expanded_false_positive_rate"] = style_validation(clf, ["x"], ["y"], expanded)["false_positive_rate"]
        v["contracted_false_positive_rate"] = style_validation(clf, ["x"], ["y"], contracted)["false_positive_rate"]
        if base: v["base_false_positive_rate"] = style_validation(clf, ["x"], ["y"], base)["false_positive_rate"]
        rows[name] = v
    print("| classifier trained on | accuracy | AUC | false positives, Alpaca answers | modern lines with contractions: as written / written out"
          + (" | false positives, base answers" if base else "") + " |")
    print("|---|---|---|---|---" + ("|---" if base else "") + "|")
    for name, v in rows.items():
        cells = [name, f"{v['accuracy']:.3f}", f"{v['auc']:.3f}", f"{100 * v['false_positive_rate']:.1f} % of {v['n_ordinary']}",
                 f"{100 * v['contracted_false_positive_rate']:.1f} % / {100 * v['expanded_false_positive_rate']:.1f} % of {len(expanded)}"]
        if base: cells.append(f"{100 * v['base_false_positive_rate']:.1f} % of {len(base)}")
        print("| " + " | ".join(cells) + " |")
    print(f"\nheld-out lines: {len(valid)} original + {len(valid)} modern (valid split)")
    if args.json: Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
