#!/usr/bin/env python3
"""Keep the notebooks' stored outputs readable in the docs: drop stderr streams (progress bars, library warnings) and
write temporary directories as `$TMP` and the checkout as `.`. `--check` lists what would change and exits 1 (tests/test_docs.py)."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TMP = re.compile(r"/tmp/(?:tmp[\w-]+|[\w.-]+)")                     # a temporary directory: /tmp/tmpab12cd/... or /tmp/demo_clone/...
PATHS = [(re.compile(re.escape(str(ROOT)) + r"/?"), "./"), (re.compile(re.escape(str(ROOT.parent/"shared")) + "/"), "../shared/"),
         (re.compile(r"/work/[\w.-]+/"), "./"), (TMP, "$TMP")]      # the checkout, the shared data beside it, other checkouts, temporaries

def tidy_text(s: str) -> str:
    for rx, rep in PATHS: s = rx.sub(rep, s)
    return s

def tidy(nb: dict) -> list[str]:
    "Tidy `nb` in place; returns what changed."
    changes = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code": continue
        outs = []
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr": changes.append(f"cell {i}: stderr output"); continue
            for key, val in ([("text", o["text"])] if "text" in o else []) + [(k, v) for k, v in o.get("data", {}).items() if k.startswith("text/")]:
                txt = "".join(val) if isinstance(val, list) else val
                new = tidy_text(txt)
                if new != txt:
                    changes.append(f"cell {i}: machine path in {key}")
                    lines = new.splitlines(keepends=True)
                    if key == "text": o["text"] = lines
                    else: o["data"][key] = lines
            outs.append(o)
        c["outputs"] = outs
    return changes

def main(argv):
    check = "--check" in argv
    bad = 0
    for f in sorted((ROOT/"nbs").glob("*.ipynb")):
        nb = json.loads(f.read_text())
        ch = tidy(nb)
        if not ch: continue
        bad += 1
        if check: print(f"{f.name}: " + "; ".join(ch[:5]) + (" ..." if len(ch) > 5 else ""))
        else: f.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    if check and bad: print(f"{bad} notebook(s) have untidy stored outputs; run `python .ci/tidy_outputs.py` and `nbdev_clean`")
    return 1 if (check and bad) else 0

if __name__ == "__main__": sys.exit(main(sys.argv[1:]))
