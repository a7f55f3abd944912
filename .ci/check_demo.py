"""Check a demo run's eval/results.json against the table the README publishes ("What the demo prints").

    sftr demo --out /tmp/demo && python .ci/check_demo.py /tmp/demo/eval/results.json     # or: bash .ci/run --slow

The README's row is read from README.md itself (the line after the `| sparsity | fixed-response rate @Base | ...` header;
columns are found by their headers),
so editing the table without rerunning the demo makes this check fail. Tolerances — what thread counts and the fused
kernels may move, as the README says ("the last digits of the KL values", "a prompt or two across the fixed-response
line"):

- sparsity: 0.5 percentage points
- fixed-response rates (@Base, @SFT, @LCDD, @Trig): 3 percentage points (3 of the 100 prompts)
- KL(SFT‖LCDD): 0.001 nats/token absolute (0.0036 after 120 LCDD steps, 0.0177 and 0.0181 after the preset's 90 with the two attention kernels; at such sizes a relative bound would be all noise)
- KL(SFT‖Trig), KL(Base‖Trig): 25 % relative
- reference NLL (@Base, @SFT, @LCDD, @Trig): 5 % relative
- the number of prompts: exactly the README's 100
"""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = ("base", "sft", "lcdd", "trig")
COLUMNS = ("sparsity", *(f"rate_{c}" for c in CONDITIONS), "kl_sft_lcdd", "kl_sft_trig", "kl_base_trig", *(f"nll_{c}" for c in CONDITIONS))
# column: (kind, tolerance) — "pp": absolute, in percentage points; "abs": absolute; "rel": relative
TOLERANCES = {"sparsity": ("pp", 0.5), **{f"rate_{c}": ("pp", 3.0) for c in CONDITIONS},
              "kl_sft_lcdd": ("abs", 0.001), "kl_sft_trig": ("rel", 0.25), "kl_base_trig": ("rel", 0.25), **{f"nll_{c}": ("rel", 0.05) for c in CONDITIONS}}
N_PROMPTS = 100
KL_HEADS = {"KL(SFT‖LCDD)": "kl_sft_lcdd", "KL(SFT‖Trig)": "kl_sft_trig", "KL(Base‖Trig)": "kl_base_trig"}
METRIC_HEADS = {"fixed-response rate": "rate", "fixed_response_rate": "rate", "reference NLL": "nll", "ref_nll": "nll"}


def _cells(line: str) -> list[str]: return [c.strip() for c in line.strip().strip("|").split("|")]


def column_names(header: str, source) -> list[str | None]:
    """The COLUMNS name of each header cell, None for a column the check does not read (`results_table`'s KL(Base‖LCDD)).
    A per-condition header is `METRIC @COND`, or a bare `@COND` that continues the metric before it (the README's style)."""
    names, metric = [], None
    for h in _cells(header):
        if h == "sparsity": names.append("sparsity"); continue
        if h in KL_HEADS: names.append(KL_HEADS[h]); continue
        if h == "KL(Base‖LCDD)": names.append(None); continue
        head, at, cond = h.rpartition("@")
        if at and head.strip(): metric = METRIC_HEADS.get(head.strip())
        if not at or metric is None or cond.lower() not in CONDITIONS: raise ValueError(f"{source}: unknown demo table column {h!r}")
        names.append(f"{metric}_{cond.lower()}")
    missing = [c for c in COLUMNS if c not in names]
    if missing: raise ValueError(f"{source}: the demo table has no column for {', '.join(missing)}")
    return names


def readme_row(readme: Path) -> dict[str, float]:
    "The published demo numbers: percentages as numbers of percent, KL and NLL in nats per token."
    lines = readme.read_text().splitlines()
    heads = [i for i, l in enumerate(lines) if l.startswith("| sparsity | fixed-response rate @Base |")]
    if len(heads) != 1: raise ValueError(f"{readme}: expected one demo table header '| sparsity | fixed-response rate @Base | ...', found {len(heads)}")
    return table_row(lines[heads[0] + 2], readme, lines[heads[0]])


def table_row(line: str, source, header: str) -> dict[str, float]:
    "One markdown row of the demo's table (the README's, or `results_table`'s in 10_demo) as numbers in README units, its columns named by `header`."
    names, cells = column_names(header, source), _cells(line)
    if len(cells) != len(names): raise ValueError(f"{source}: the demo row has {len(cells)} cells, its header {len(names)}: {cells}")
    out = {}
    for name, cell in zip(names, cells):
        if name is None: continue
        m = re.fullmatch(r"([0-9.]+)\s*(%?)", cell)
        if not m: raise ValueError(f"{source}: cannot read {name} from {cell!r}")
        if (name.startswith(("rate", "sparsity"))) != bool(m.group(2)): raise ValueError(f"{source}: {name} {cell!r}: expected a percentage only for rates and sparsity")
        out[name] = float(m.group(1))
    return out


def measured(res: dict) -> dict[str, float]:
    "The same numbers from a results.json (rates and sparsity are fractions there)."
    try:
        metric, conds, kl = res["metric"], res["conditions"], res["kl"]
        return {"sparsity": 100 * res["sparsity"], **{f"rate_{c}": 100 * conds[c][metric] for c in CONDITIONS},
                "kl_sft_lcdd": kl["sft_lcdd"], "kl_sft_trig": kl["sft_trig"], "kl_base_trig": kl["base_trig"], **{f"nll_{c}": conds[c]["ref_nll"] for c in CONDITIONS}}
    except (KeyError, TypeError) as e:
        raise ValueError(f"results.json lacks {e} (is it a full `sftr demo` evaluation with the KL benchmark and the reference NLL?)") from e


def compare(expected: dict, got: dict) -> list[str]:
    "One line per number outside its tolerance."
    bad = []
    for name, (kind, tol) in TOLERANCES.items():
        e, g = expected[name], got[name]
        off = abs(g - e) / abs(e) if kind == "rel" else abs(g - e)
        if not off <= tol:
            unit = {"pp": " percentage points", "abs": "", "rel": " (relative)"}[kind]
            bad.append(f"{name}: README {e:g}, measured {g:.4g} (off by {off:.3g}{unit}; tolerance {tol:g})")
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="RUN/eval/results.json of a `sftr demo` run")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    a = p.parse_args(argv)
    try:
        res = json.loads(a.results.read_text())
        expected, got = readme_row(a.readme), measured(res)
    except (OSError, ValueError) as e:
        print(f"check_demo: error: {e}", file=sys.stderr); return 2
    bad = compare(expected, got)
    if res.get("n_prompts") != N_PROMPTS: bad.append(f"n_prompts: README {N_PROMPTS}, measured {res.get('n_prompts')}")
    for name in COLUMNS: print(f"{name:<14} README {expected[name]:>9g}   measured {got[name]:>10.4g}   tolerance {TOLERANCES[name][1]:g} ({TOLERANCES[name][0]})")
    if bad:
        print("check_demo: FAIL — the demo no longer reproduces the README table:\n  " + "\n  ".join(bad), file=sys.stderr); return 1
    print("check_demo: the demo reproduces the README table within the tolerances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
