"""Render the documentation site to static HTML, without Quarto.

    python .ci/render_docs.py                   # every page of the sidebar -> _site_html/ (open _site_html/index.html)
    python .ci/render_docs.py --out /tmp/site   # somewhere else
    python .ci/render_docs.py --only index.ipynb 00_equivalence.ipynb   # a few pages (the sidebar still lists all)

The hosted site is built by `nbdev_docs`: nbdev's notebook processor, then Quarto. Quarto is not available
everywhere, so this script keeps nbdev's half and replaces Quarto's:

1. every page in the sidebar of `_quarto.yml` (read by `.ci/docs_config.py`), in its order; a listed file that
   does not exist yet is skipped with a note;
2. each notebook is processed exactly as `nbdev_proc_nbs` processes it: `nbdev.serve_drv.exec_nb` with
   `nbdev.processors.FilterDefaults` (frontmatter, `#| hide` / `#| export` cells removed, `show_doc` added
   after exported functions and classes and executed, doc links added, `#| exports` cells folded), in
   spawned worker processes, as nbdev does. Before that, two faults nbdev lets through are reported as
   errors: a cell that mixes imports with other code (nbdev executes the whole cell out of context while
   building the docs: it fails there or runs heavy work) and prose in the title cell (nbdev drops it);
3. nbconvert's HTML exporter renders the result, honouring the Quarto cell options the processor leaves for
   Quarto (`echo: false`, `output: false`, `include: false`, `output: asis` for `show_doc`, `code-fold`,
   `fig-cap`), with images embedded as data URIs and maths typeset in the browser by KaTeX (the method
   `_quarto.yml` selects), copied next to the pages from Debian's `libjs-katex`
   (`apt-get install libjs-katex`) or any KaTeX `dist` folder given with `--katex`;
4. each page gets the site's sidebar and navbar; pages are named as Quarto names them
   (`00_equivalence.ipynb` -> `equivalence.html`, as nbdev's `output-file`), and links to notebooks and to
   the hosted site are rewritten to the local pages.

Notebook outputs (figures, printed results) are the ones stored in the notebooks, as on the hosted site;
notebooks without stored outputs are listed at the end. It prints the number of pages rendered and exits
with status 1 if any notebook failed (the other pages are still written). `tests/test_docs.py` renders the
site and checks it in headless Chromium.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_config  # noqa: E402  (the one reader of _quarto.yml)

ROOT, NBS = docs_config.ROOT, docs_config.NBS
KATEX_DIRS = ("/usr/share/javascript/katex", "node_modules/katex/dist")
KATEX_INSTALL = "apt-get install -y libjs-katex"


# ---------------------------------------------------------------------------------------------- step 2: nbdev

def process_notebook(src: str, dst: str) -> list[str]:
    "Run nbdev's docs processor on `src` into `dst` (in a worker process); returns nbdev's warnings."
    os.chdir(Path(src).parent)                      # notebooks run from their own folder, as under nbdev_test
    import nbdev.serve_drv
    from nbdev.processors import FilterDefaults
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nbdev.serve_drv.main((Path(src), Path(dst), FilterDefaults))   # what nbdev_proc_nbs runs per notebook
    return [str(w.message).strip().splitlines()[0] for w in caught if "nbdev" in str(w.filename)]


_RUN_ANYWAY = re.compile(r"^\s*#\|\s*(export|exports|exporti|exec_doc)\b", re.M)


def executed_out_of_context(path: Path) -> list[str]:
    """Cells nbdev's docs processor would execute although they are not exports: a cell containing an import is
    run (whatever else it holds) in a shell that has only the notebook's imports and exports, so its other code
    fails there or, worse, runs heavy work (a training run, the real model) on every docs build. nbdev only warns
    ("Found cells containing imports and other code"); here it is an error. Fix: put the imports in a cell of their own.
    Also reported: prose in the title cell, which nbdev's frontmatter processor drops."""
    import ast, nbformat
    bad = []
    for i, c in enumerate(nbformat.read(path, as_version=4).cells):
        if c.cell_type != "code" or _RUN_ANYWAY.search(c.source) or re.search(r"^\s*#\|\s*eval:\s*false", c.source, re.M): continue
        try: tree = ast.parse("\n".join(l for l in c.source.splitlines() if not l.lstrip().startswith(("%", "!"))))
        except SyntaxError: continue
        defs_only = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)   # harmless to run
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)) and \
           any(not isinstance(n, defs_only) for n in tree.body):
            first = next(l for l in c.source.splitlines() if not l.startswith("#|"))
            bad.append(f"cell {i} mixes imports and other code (nbdev_docs would execute all of it; put its imports in a cell of their own): {first[:80]!r}")
    return bad + lost_title_prose(path)


def lost_title_prose(path: Path) -> list[str]:
    "nbdev's frontmatter processor keeps only `# title`, `> description` and `- key: value` of the title cell: other text there vanishes."
    import nbformat
    cell = next((c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"), None)
    if cell is None or not re.search(r"^#\s+\S", cell.source, flags=re.M): return []
    lost = [l for l in cell.source.splitlines() if l.strip() and not re.match(r"^(#\s+\S|>\s+\S|-\s+\S.*:.*\S\s*$)", l)]
    return [f"the title cell holds text that nbdev drops from the page (put it in a cell of its own): {lost[0][:80]!r}"] if lost else []


# ---------------------------------------------------------------------------------------------- step 3: Quarto's half

_OPT = re.compile(r"^\s*#\|\s?(.*)$")


def cell_options(source: str) -> tuple[dict, str]:
    "Quarto `#| key: value` options at the top of a code cell, and the source without them."
    lines, opts = source.splitlines(), []
    while lines and _OPT.match(lines[0]): opts.append(_OPT.match(lines.pop(0)).group(1))
    parsed = yaml.safe_load("\n".join(opts)) if opts else {}
    return (parsed if isinstance(parsed, dict) else {}), "\n".join(lines)


def _attrs(spec: str) -> str:
    "Pandoc attributes `{.cls #id key=\"v\"}` as HTML attributes."
    classes = re.findall(r"(?:^|\s)\.([\w-]+)", spec)
    ident = re.findall(r"(?:^|\s)#([\w-]+)", spec)
    pairs = re.findall(r'([\w-]+)=("[^"]*"|\S+)', spec)
    out = [f'{k}="{html.escape(v.strip(chr(34)))}"' for k, v in pairs]
    if classes: out.append(f'class="{" ".join(classes)}"')
    if ident: out.append(f'id="{ident[0]}"')
    return " ".join(out)


def quarto_markdown(md: str) -> str:
    "The Pandoc/Quarto extensions nbdev emits, as plain Markdown + HTML: link attributes and fenced divs."
    link = r"\[([^\]\n]*)\]\(([^)\s]+)\)\{([^}\n]*)\}"
    # a link alone on its line (show_doc's "source") becomes an HTML block, kept whole by nbconvert's image embedding;
    # inside text, the attributes are dropped (nbconvert parses inline HTML tag by tag)
    md = re.sub(rf"^[ \t]*{link}[ \t]*$", lambda m: f'<div class="sd-source"><a href="{m[2]}" {_attrs(m[3])}>{m[1]}</a></div>', md, flags=re.M)
    md = re.sub(link, lambda m: f"[{m[1]}]({m[2]})", md)
    out = []
    for line in md.splitlines():
        m = re.match(r"^\s*:::+\s*(\{([^}]*)\}|[\w-]+)?\s*$", line)
        if not m: out.append(line); continue
        if m[1] is None: out += ["", "</div>", ""]
        else:
            spec = m[2] if m[2] is not None else "." + m[1]
            if "callout" in spec: spec += " .callout"
            out += ["", f"<div {_attrs(spec)}>", ""]
    return "\n".join(out)


def _markdown_of(outputs) -> str:
    parts = []
    for o in outputs:
        data = o.get("data", {})
        if "text/markdown" in data: parts.append("".join(data["text/markdown"]))
        elif o.get("output_type") == "stream": parts.append("".join(o.get("text", "")))
    return "\n\n".join(parts)


def quarto_cells(nb):
    "Apply the Quarto cell options to a processed notebook (in place); returns its frontmatter."
    import nbformat
    fm, cells = {}, []
    for i, cell in enumerate(nb.cells):
        src = cell.get("source")
        if src is None: continue                            # removed by nbdev (`hide`, `export`, frontmatter cells)
        if i == 0 and cell.cell_type == "raw" and src.startswith("---"):
            fm = yaml.safe_load(src.strip().strip("-")) or {}; continue
        if cell.cell_type == "markdown":
            cell.source = quarto_markdown(src); cells.append(cell); continue
        if cell.cell_type != "code": continue
        opts, cell.source = cell_options(src)
        if str(opts.get("include", "")).lower() == "false": continue
        if opts.get("echo") is False: cell.metadata.setdefault("transient", {})["remove_source"] = True
        if opts.get("output") is False: cell.outputs = []
        if "code-fold" in opts: cell.metadata["code_fold"] = [str(opts["code-fold"]).lower(), opts.get("code-summary", "Code")]
        if "fig-cap" in opts: cell.metadata["fig_cap"] = str(opts["fig-cap"])
        if opts.get("output") == "asis":                    # show_doc: its Markdown output becomes part of the page
            if opts.get("echo") is not False: cells.append(nbformat.v4.new_code_cell(cell.source))
            md = _markdown_of(cell.outputs)
            if md.strip(): cells.append(nbformat.v4.new_markdown_cell(quarto_markdown(md), metadata={"showdoc": True}))
            continue
        if cell.source.strip() or cell.outputs: cells.append(cell)
    nb.cells = cells
    return fm


def pandoc_id(text: str) -> str:
    "Pandoc's auto identifier for a heading (so nbdev's `page.html#name` doc links resolve)."
    s = html.unescape(re.sub(r"<[^>]+>", "", text)).lower()
    s = "".join(c for c in s if c.isalnum() or c in "_-. \n\t")
    s = re.sub(r"\s", "-", s.strip())
    s = re.sub(r"^[^a-z]+", "", s)
    return s or "section"


def headings(body: str) -> tuple[str, list[tuple[int, str, str]]]:
    "Give every h1-h4 a Pandoc id and an anchor; returns the body and the (level, id, text) table of contents."
    seen, toc = {}, []
    def fix(m):
        lvl, attrs, inner = int(m[1]), m[2] or "", m[3]
        text = html.unescape(re.sub(r"<[^>]+>", "", inner)).strip()
        ident = pandoc_id(inner)
        if ident in seen: seen[ident] += 1; ident = f"{ident}-{seen[ident]}"
        else: seen[ident] = 0
        toc.append((lvl, ident, text))
        return f'<h{lvl} id="{ident}"{attrs}>{inner}<a class="anchor-link" href="#{ident}">¶</a></h{lvl}>'
    return re.sub(r"<h([1-4])((?:\s[^>]*)?)>(.*?)</h\1>", fix, body, flags=re.S), toc


TEMPLATE = r"""
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<link rel="stylesheet" href="katex/katex.min.css">
<script defer src="katex/katex.min.js"></script>
<script defer src="katex/contrib/auto-render.js"></script>
<script>
document.addEventListener("DOMContentLoaded", function () {
  renderMathInElement(document.querySelector("main"), {
    delimiters: [{left: "$$", right: "$$", display: true}, {left: "\\[", right: "\\]", display: true},
                 {left: "$", right: "$", display: false}, {left: "\\(", right: "\\)", display: false}],
    throwOnError: false});
  document.body.setAttribute("data-math", "katex");
});
</script>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_css -%}<style>{{ resources.site_css }}</style>{%- endblock html_head_css -%}
{%- block input_group -%}
{%- if cell.metadata.code_fold -%}
<details class="code-fold"{% if cell.metadata.code_fold[0] == 'show' %} open{% endif %}><summary>{{ cell.metadata.code_fold[1] }}</summary>
{{ super() }}
</details>
{%- else -%}{{ super() }}{%- endif -%}
{%- endblock input_group -%}
{%- block outputs -%}
{{ super() }}
{%- if cell.metadata.fig_cap -%}<figcaption class="fig-cap">{{ cell.metadata.fig_cap | escape_html }}</figcaption>{%- endif -%}
{%- endblock outputs -%}
{%- block body_header -%}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
@@NAVBAR@@
<div class="site">
@@SIDEBAR@@
<main>
@@TITLE@@
{%- endblock body_header -%}
{%- block body_footer -%}
</main>
@@TOC@@
</div>
</body>
{%- endblock body_footer -%}
"""

SITE_CSS = """
body { margin: 0; }
.navbar { background: #2780e3; color: white; padding: .6rem 1.2rem; display: flex; gap: 1.4rem; align-items: baseline; }
.navbar a { color: white; text-decoration: none; } .navbar .brand { font-weight: 600; font-size: 1.2rem; }
.site { display: flex; align-items: flex-start; }
nav.sidebar { width: 15rem; flex: none; padding: 1rem; position: sticky; top: 0; max-height: 100vh; overflow-y: auto; font-size: .9rem; }
nav.sidebar .section { font-weight: 600; margin: .8rem 0 .2rem; } nav.sidebar ul { list-style: none; padding-left: .6rem; margin: 0; }
nav.sidebar a { color: #333; text-decoration: none; } nav.sidebar a.active { color: #2780e3; font-weight: 600; }
main { flex: 1; min-width: 0; max-width: 60rem; padding: 1rem 2rem 4rem; }
nav.toc { width: 13rem; flex: none; padding: 1rem; position: sticky; top: 0; font-size: .8rem; }
nav.toc ul { list-style: none; padding-left: .5rem; } nav.toc .l3 { padding-left: 1rem; }
h1.title { margin-bottom: .2rem; } div.description { font-style: italic; font-size: 1.15rem; opacity: .75; margin-top: 0; }
details.code-fold > summary { cursor: pointer; color: #666; font-size: .85rem; }
.jp-Cell-outputWrapper { flex-wrap: wrap; }
figcaption.fig-cap { flex-basis: 100%; font-size: .85rem; color: #555; margin: .3rem 0 1rem 1rem; }
div.sd-source { float: right; font-size: smaller; }
.callout { border-left: 4px solid #2780e3; padding: .2rem 1rem; margin: 1rem 0; background: #f5f9fe; }
.katex-display { overflow-x: auto; overflow-y: hidden; }
"""


def _nav(cfg: dict, pages: dict, current: str) -> tuple[str, str]:
    "The navbar and the sidebar of one page (every page whose source exists is linked)."
    site = cfg["website"]
    def href(f): return pages[f]["out"] if f in pages else None
    items = [f'<a class="brand" href="index.html">{html.escape(site.get("title", ""))}</a>']
    for it in site.get("navbar", {}).get("left", []) + site.get("navbar", {}).get("right", []):
        h = it.get("href", ""); h = href(h) or h
        items.append(f'<a href="{h}">{html.escape(it.get("text") or it.get("icon", "").title())}</a>')
    side = ['<nav class="sidebar">']
    for section, files in docs_config.sidebar(cfg):
        links = [f'<li><a href="{pages[f]["out"]}"{" class=active" if f == current else ""}>{html.escape(pages[f]["title"])}</a></li>'
                 for f in files if f in pages]
        if not links: continue
        if section: side.append(f'<div class="section">{html.escape(section)}</div>')
        side.append("<ul>" + "".join(links) + "</ul>")
    side.append("</nav>")
    return '<header class="navbar">' + "".join(items) + "</header>", "\n".join(side)


def fix_links(body: str, pages: dict, by_name: dict, site_url: str, missing: set) -> str:
    "Hosted-site and notebook links -> the local pages."
    if site_url: body = body.replace(f'href="{site_url.rstrip("/")}/', 'href="')
    def nb(m):
        name, frag = m[1], m[2] or ""
        if name in by_name: return f'href="{by_name[name]}{frag}"'
        missing.add(name); return m[0]
    return re.sub(r'href="(?:\./)?([\w.-]+\.(?:ipynb|md|qmd))(#[^"]*)?"', nb, body)


def render_page(nb, page: dict, pages: dict, cfg: dict, exporter, site_url: str, missing: set) -> str:
    "One page: Quarto options applied, converted by nbconvert, then title, navigation and links."
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(NBS), "name": page["title"]},
                                                         "site_css": SITE_CSS})
    title = f'<h1 class="title">{html.escape(page["title"])}</h1>'
    if page.get("description"):                            # Quarto renders the description as Markdown
        from nbconvert.filters import markdown2html
        title += f'\n<div class="description">{markdown2html(str(page["description"]))}</div>'
    navbar, sidebar = _nav(cfg, pages, page["src"])
    body = body.replace("@@NAVBAR@@", navbar).replace("@@SIDEBAR@@", sidebar).replace("@@TITLE@@", title)
    body, toc = headings(body)
    toc_html = "".join(f'<li class="l{lvl}"><a href="#{i}">{html.escape(t)}</a></li>' for lvl, i, t in toc if lvl in (2, 3) and t)
    body = body.replace("@@TOC@@", f'<nav class="toc"><b>On this page</b><ul>{toc_html}</ul></nav>' if toc_html else "")
    site_title = cfg["website"].get("title", "")
    full = page["title"] if page["title"] == site_title else f"{page['title']} – {site_title}"
    body = re.sub(r"<title>.*?</title>", f"<title>{html.escape(full)}</title>", body, count=1, flags=re.S)
    return fix_links(body, pages, {k: v["out"] for k, v in pages.items()}, site_url, missing)


def first_title(path: Path) -> str:
    "A page's title before processing: the frontmatter `title`, or the first `# heading` (as nbdev reads it)."
    import nbformat
    if path.suffix == ".md":
        m = re.search(r"^title:\s*(.+)$", path.read_text(encoding="utf-8"), flags=re.M)
        return m[1].strip().strip("\"'") if m else path.stem
    for c in nbformat.read(path, as_version=4).cells:
        m = re.match(r"^#\s+(.+)", c.source) if c.cell_type == "markdown" else None
        if m: return m[1].strip()
    return path.stem


def markdown_page(path: Path):
    "A `.md` page (e.g. cite.md) as a one-cell notebook, with its YAML frontmatter."
    import nbformat
    text = path.read_text(encoding="utf-8")
    fm = {}
    m = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    if m: fm, text = yaml.safe_load(m[1]) or {}, text[m.end():]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(quarto_markdown(text))])
    return nb, fm


def find_katex(given: str | None) -> Path:
    for d in ([given] if given else []) + [os.environ.get("KATEX_DIR", "")] + list(KATEX_DIRS):
        if d and (Path(d)/"katex.min.js").exists() and (Path(d)/"contrib"/"auto-render.js").exists(): return Path(d)
        if d and (Path(d)/"katex.min.js").exists() and (Path(d)/"contrib"/"auto-render.min.js").exists(): return Path(d)
    sys.exit(f"KaTeX not found (looked in {', '.join(KATEX_DIRS)}); install it with `{KATEX_INSTALL}` "
             "or pass --katex DIR (a KaTeX dist folder)")


def copy_katex(src: Path, out: Path):
    "KaTeX next to the pages: the script, auto-render, the stylesheet and its fonts (symlinks followed)."
    dst = out/"katex"
    if dst.exists(): shutil.rmtree(dst)
    (dst/"contrib").mkdir(parents=True)
    shutil.copy(src/"katex.min.js", dst); shutil.copy(src/"katex.min.css", dst)
    ar = src/"contrib"/"auto-render.js"
    shutil.copy(ar if ar.exists() else src/"contrib"/"auto-render.min.js", dst/"contrib"/"auto-render.js")
    shutil.copytree(src/"fonts", dst/"fonts", symlinks=False)


# ---------------------------------------------------------------------------------------------- driver

class RenderError(Exception): pass


def render(out: Path, only: list[str] | None = None, workers: int = 2, katex: str | None = None) -> list[Path]:
    "Render the site into `out`; returns the pages written."
    import nbformat
    from nbconvert import HTMLExporter
    from jinja2 import DictLoader
    from nbdev.config import get_config
    from nbdev.doclinks import _nbpath2html
    os.environ.setdefault("OMP_NUM_THREADS", "1")           # processing imports torch: one thread per worker
    cfg = docs_config.load()
    katex_dir = find_katex(katex)
    ncfg = get_config(path=ROOT)
    site_url = f"{ncfg.doc_host}{ncfg.doc_baseurl}"
    out.mkdir(parents=True, exist_ok=True)
    listed = [f for _, files in docs_config.sidebar(cfg) for f in files]
    unknown = sorted(set(only or []) - set(listed))
    if unknown: raise RenderError(f"not in the sidebar of _quarto.yml: {', '.join(unknown)} (choose from {', '.join(listed)})")
    todo = []
    for f in listed:
        if only and f not in only: continue
        if not (NBS/f).exists(): print(f"note: {f} is in the sidebar but nbs/{f} does not exist yet: skipped"); continue
        todo.append(f)
    print(f"processing {sum(f.endswith('.ipynb') for f in todo)} notebooks with nbdev's FilterDefaults ({workers} workers)...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sftr_docs_"))
    nbs = [f for f in todo if f.endswith(".ipynb")]
    import render_docs          # the workers import this file as a module (`__main__` cannot be pickled by name)
    work = render_docs.process_notebook
    try:
        notes, failed = {}, {}
        for f in nbs:
            bad = executed_out_of_context(NBS/f)
            if bad: failed[f] = "\n".join(bad)
        nbs = [f for f in nbs if f not in failed]
        with ProcessPoolExecutor(max(1, workers), mp_context=get_context("spawn")) as ex:   # isolated, as nbdev does
            futs = {f: ex.submit(work, str(NBS/f), str(tmp/f)) for f in nbs}
            for f, fut in futs.items():
                try: notes[f] = fut.result()
                except Exception as e: failed[f] = f"{e}\n{e.__cause__ or ''}".strip()
        for f, err in failed.items():
            print(f"ERROR: nbdev's docs processor failed on nbs/{f} (nbdev_docs would fail the same way):\n{err}\n")
        todo = [f for f in todo if f not in failed]
        pages, docs, no_outputs = {}, {}, []
        for f in listed:                                    # every existing page is in the navigation, rendered or not
            if (NBS/f).exists(): pages[f] = dict(src=f, out=_nbpath2html(Path(f)).name if f.endswith(".ipynb") else Path(f).with_suffix(".html").name,
                                                 title=first_title(NBS/f), description="")
        for f in todo:
            if f.endswith(".ipynb"):
                nb = nbformat.read(tmp/f, as_version=4)
                src_nb = nbformat.read(NBS/f, as_version=4)
                if any(c.cell_type == "code" for c in src_nb.cells) and not any(c.get("outputs") for c in src_nb.cells): no_outputs.append(f)
                fm = quarto_cells(nb)
                outname = fm.get("output-file") or _nbpath2html(Path(f)).name
            else:
                nb, fm = markdown_page(NBS/f)
                outname = Path(f).with_suffix(".html").name
            pages[f] = dict(src=f, out=outname, title=str(fm.get("title") or Path(f).stem), description=fm.get("description", ""))
            docs[f] = nb
        exporter = HTMLExporter(extra_loaders=[DictLoader({"sftr_docs.html.j2": TEMPLATE})], template_file="sftr_docs.html.j2",
                                embed_images=True, exclude_anchor_links=True,
                                exclude_input_prompt=True, exclude_output_prompt=True)
        written, missing = [], set()
        for f in todo:
            html_text = render_page(docs[f], pages[f], pages, cfg, exporter, site_url, missing)
            (out/pages[f]["out"]).write_text(html_text, encoding="utf-8")
            written.append(out/pages[f]["out"])
            for n in notes.get(f, []): print(f"note: {f}: nbdev: {n}")
        copy_katex(katex_dir, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if missing: print(f"note: links to pages not rendered: {', '.join(sorted(missing))}")
    if no_outputs: print(f"note: notebooks without stored outputs (their pages show code only): {', '.join(no_outputs)}")
    print(f"rendered {len(written)} pages into {out}/ (open {out/'index.html'})")
    if failed: raise RenderError(f"{len(failed)} notebook(s) failed in nbdev's docs processor: {', '.join(failed)}")
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT/"_site_html"), help="output folder (default: _site_html/ in the repository)")
    ap.add_argument("--only", nargs="*", help="render only these sidebar entries (e.g. index.ipynb cite.md)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="notebooks processed in parallel (default: 2)")
    ap.add_argument("--katex", help=f"a KaTeX dist folder (default: {KATEX_DIRS[0]}, from `{KATEX_INSTALL}`)")
    a = ap.parse_args()
    try: render(Path(a.out), a.only, a.workers, a.katex)
    except RenderError as e: sys.exit(f"FAIL: {e}")
