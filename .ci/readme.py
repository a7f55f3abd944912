"""Generate README.md from nbs/index.ipynb without Quarto, or check that it is up to date.

Hosted builds use `nbdev_readme` (which needs Quarto); here the notebook is processed with
nbdev's own processor (directives stripped, `#| hide` cells dropped) and converted with
nbconvert's Markdown exporter, keeping the stored outputs.

    python .ci/readme.py           # write README.md
    python .ci/readme.py --check   # exit 1 if README.md is stale
"""
import re
import sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parent.parent


def _directives(src: str) -> dict:
    "nbdev `#| key value` directives at the top of a cell."
    out = {}
    for line in src.splitlines():
        if not line.startswith("#|"): break
        key, *val = line[2:].strip().split(maxsplit=1)
        out[key.rstrip(":")] = val[0] if val else ""
    return out


def render() -> str:
    nb = nbformat.read(root / "nbs" / "index.ipynb", as_version=4)
    cells = []
    for c in nb.cells:
        if c.cell_type == "code":
            d = _directives(c.source)
            if "hide" in d or "exporti" in d or d.get("include") == "false": continue
            c.source = "\n".join(l for l in c.source.splitlines() if not l.startswith("#|")).strip()
            if "hide_input" in d or "echo" in d and d["echo"] == "false": c.source = ""
            if not c.source and not c.outputs: continue
        cells.append(c)
    for c in cells:   # notebook links resolve on the docs site; from the repository root they live in nbs/
        if c.cell_type == "markdown": c.source = re.sub(r"\]\((?!https?:)([\w-]+\.ipynb)\)", r"](nbs/\1)", c.source)
    nb.cells = cells
    nb.metadata["language_info"] = {"name": "python"}
    body, _ = MarkdownExporter().from_notebook_node(nb)
    note = "<!-- generated from nbs/index.ipynb by `python .ci/readme.py`; edit the notebook, not this file -->\n\n"
    return note + body.strip() + "\n"


if __name__ == "__main__":
    text, readme = render(), root / "README.md"
    if "--check" in sys.argv:
        if readme.read_text(encoding="utf-8") != text:
            print("README.md is stale: regenerate it with `python .ci/readme.py` after editing nbs/index.ipynb")
            sys.exit(1)
        print("README.md is up to date")
    else:
        readme.write_text(text, encoding="utf-8")
        print(f"wrote {readme}")
