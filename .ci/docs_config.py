"""The docs site has ONE configuration: the top-level `_quarto.yml`.

nbdev and Quarto read `nbs/_quarto.yml` (Quarto renders from `nbs/`); that file is a symbolic link to
`../_quarto.yml`, so there is nothing to keep in sync. This script shows that both paths resolve to the
same file, lists the sidebar in reading order (marking pages whose source does not exist yet) and, with
`--check`, fails when the link is broken or a notebook in `nbs/` is missing from the sidebar.

    python .ci/docs_config.py           # show the link and the sidebar
    python .ci/docs_config.py --check   # exit 1 on a broken link or a notebook left out of the sidebar
    python .ci/docs_config.py --fix     # (re)create nbs/_quarto.yml as the link

`.ci/render_docs.py` reads the sidebar through `sidebar()` below.
"""
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/"nbs"
TOP, LINK = ROOT/"_quarto.yml", NBS/"_quarto.yml"


def load() -> dict:
    "The site configuration, read through the link that nbdev and Quarto use."
    return yaml.safe_load(LINK.read_text(encoding="utf-8"))


def sidebar(cfg: dict | None = None) -> list[tuple[str, list[str]]]:
    "`[(section title, [file, ...]), ...]` in sidebar order; a top-level file gets the section title `''`."
    cfg = cfg or load()
    out = []
    for item in cfg["website"]["sidebar"]["contents"]:
        if isinstance(item, str): out.append(("", [item]))
        else: out.append((item["section"], [c if isinstance(c, str) else c["href"] for c in item.get("contents") or []]))
    return out


def problems() -> list[str]:
    "What `--check` fails on."
    errs = []
    if not LINK.is_symlink(): errs.append(f"{LINK} is not a symbolic link (run: python .ci/docs_config.py --fix)")
    elif LINK.resolve() != TOP.resolve(): errs.append(f"{LINK} points to {os.readlink(LINK)}, not to {TOP}")
    if errs: return errs
    listed = {f for _, files in sidebar() for f in files}
    for nb in sorted(NBS.glob("*.ipynb")):
        if nb.name not in listed: errs.append(f"nbs/{nb.name} is not in the sidebar of _quarto.yml")
    return errs


if __name__ == "__main__":
    if "--fix" in sys.argv:
        if LINK.exists() or LINK.is_symlink(): LINK.unlink()
        LINK.symlink_to(Path("..")/TOP.name)
    print(f"{TOP.relative_to(ROOT)} -> {TOP.resolve()}")
    print(f"{LINK.relative_to(ROOT)} -> {LINK.resolve()}  (symlink: {LINK.is_symlink()}, target {os.readlink(LINK) if LINK.is_symlink() else '-'})")
    print(f"same file: {LINK.resolve() == TOP.resolve()}")
    for section, files in sidebar():
        print(f"{section or '(top level)'}:")
        for f in files: print(f"    {f}{'' if (NBS/f).exists() else '   (not written yet: skipped when rendering)'}")
    if "--check" in sys.argv:
        errs = problems()
        for e in errs: print("FAIL:", e)
        sys.exit(1 if errs else 0)
