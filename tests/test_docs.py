"""The documentation site renders: every sidebar page goes through nbdev's own docs processor and nbconvert
(`.ci/render_docs.py`), and the pages, opened in headless Chromium, show typeset maths, embedded figures,
`show_doc` entries and the sidebar of `_quarto.yml`.

Needs Chromium and KaTeX (Debian: `apt-get install -y chromium libjs-katex`). In CI (`CI` set) a missing
browser or KaTeX fails the test; elsewhere it skips, naming the install command."""
import html
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/".ci"))
import docs_config  # noqa: E402
import render_docs  # noqa: E402

INSTALL = "apt-get install -y chromium libjs-katex"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _missing(what: str):
    msg = f"{what} is not installed; install it with `{INSTALL}` (Debian/Ubuntu, as root)"
    if os.environ.get("CI"): pytest.fail(msg + " -- CI must run this check, not skip it")
    pytest.skip(msg)


def _browser() -> str:
    for b in (os.environ.get("CHROMIUM"),) + BROWSERS:
        if b and shutil.which(b): return shutil.which(b)
    _missing("Chromium")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The whole site rendered once: (output folder, the script's stdout+stderr, its exit status)."
    if not any((Path(d)/"katex.min.js").exists() for d in render_docs.KATEX_DIRS) and not os.environ.get("KATEX_DIR"): _missing("KaTeX")
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, str(ROOT/".ci"/"render_docs.py"), "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out, r.stdout + r.stderr, r.returncode


def dom(path: Path, tmp_path) -> str:
    "The DOM of a page after its scripts ran (KaTeX typesets on DOMContentLoaded)."
    r = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path/'profile'}",
                        "--virtual-time-budget=10000", "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "<html" in r.stdout, r.stderr[-2000:]
    return r.stdout


def visible_text(page: str) -> str:
    "Text a reader sees: no scripts, styles, code, or KaTeX's hidden TeX annotations."
    for tag in ("script", "style", "pre", "code", "annotation"): page = re.sub(rf"<{tag}\b.*?</{tag}>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def page_of(nb: str) -> str:
    "The page Quarto (and the script) makes of a notebook: nbdev's `output-file`, e.g. 00_equivalence.ipynb -> equivalence.html."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb)).name


def test_one_quarto_config():
    "nbs/_quarto.yml is the top-level _quarto.yml (a link), and the sidebar has the sections of the design."
    assert docs_config.LINK.is_symlink() and docs_config.LINK.resolve() == docs_config.TOP.resolve()
    sections = [s for s, _ in docs_config.sidebar() if s]
    assert sections == ["Tutorial", "The method (Appendix A/B)", "Training (Appendix C)", "Reversal (Appendix D)", "Evaluation", "Pipeline"]
    files = [f for _, fs in docs_config.sidebar() for f in fs]
    assert files[0] == "index.ipynb" and "cite.md" in files and files.index("00_equivalence.ipynb") < files.index("03_carrier.ipynb")
    assert docs_config.problems() == []


def test_quarto_options():
    "The Quarto cell options nbdev leaves in processed notebooks are honoured (checked on a hand-made notebook)."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_raw_cell("---\ntitle: T\noutput-file: t.html\n---"),
        nbformat.v4.new_code_cell("#| echo: false\n#| output: asis\nshow_doc(f)", outputs=[nbformat.v4.new_output(
            "execute_result", {"text/markdown": '[source](https://x/f.py#L1){target="_blank" style="float:right"}\n\n### f\n\n*doc*'})]),
        nbformat.v4.new_code_cell("#| include: false\nsecret = 1"),
        nbformat.v4.new_code_cell("#| fig-cap: \"A caption\"\nplot()"),
        nbformat.v4.new_markdown_cell("::: {.callout-note}\nNote [link](a.ipynb){.x}\n:::")])
    fm = render_docs.quarto_cells(nb)
    assert fm["output-file"] == "t.html" and len(nb.cells) == 3
    sd, fig, note = nb.cells
    assert sd.cell_type == "markdown" and '<div class="sd-source"><a href="https://x/f.py#L1"' in sd.source and "### f" in sd.source
    assert fig.metadata["fig_cap"] == "A caption" and fig.source == "plot()"
    assert '<div class="callout-note callout">' in note.source and "[link](a.ipynb)" in note.source and "{.x}" not in note.source
    assert render_docs.pandoc_id("Carrier.attach") == "carrier.attach" and render_docs.pandoc_id("1. The `Carrier`") == "the-carrier"


def test_site_renders(site):
    out, log, rc = site
    assert rc == 0, f"render_docs.py failed:\n{log[-6000:]}"
    n = int(re.search(r"rendered (\d+) pages", log)[1])
    listed = [f for _, fs in docs_config.sidebar() for f in fs if (docs_config.NBS/f).exists()]
    assert n == len(listed) == len(list(out.glob("*.html"))), log[-3000:]
    assert (out/"katex"/"katex.min.js").exists() and any((out/"katex"/"fonts").glob("*.woff2"))


def test_index_in_chromium(site, tmp_path):
    out, log, _ = site
    assert (out/"index.html").exists(), f"index.html was not rendered:\n{log[-4000:]}"
    page = dom(out/"index.html", tmp_path)
    title = render_docs.first_title(docs_config.NBS/"index.ipynb")
    assert re.search(rf"<title>{re.escape(html.escape(title, quote=False))}( – [^<]+)?</title>", page), re.search(r"<title>.*?</title>", page)[0]
    assert 'data-math="katex"' in page                                  # KaTeX's auto-render ran
    side = re.search(r'<nav class="sidebar">(.*?)</nav>', page, flags=re.S)[1]
    hrefs = re.findall(r'href="([^"]+)"', side)
    expected = [page_of(f) if f.endswith(".ipynb") else Path(f).with_suffix(".html").name
                for _, fs in docs_config.sidebar() for f in fs if (docs_config.NBS/f).exists()]
    assert hrefs == expected                                            # every page, in _quarto.yml's order
    assert "#|" not in visible_text(page) and "nbdev.showdoc" not in page


def test_method_page_in_chromium(site, tmp_path):
    out, log, _ = site
    path = out/"equivalence.html"                                       # 00_equivalence.ipynb, named as Quarto names it
    assert path.exists(), f"equivalence.html was not rendered:\n{log[-4000:]}"
    page = dom(path, tmp_path)
    assert "<title>Gate–weight equivalence – sft_reverse_nb</title>" in page
    main = re.search(r"<main>(.*)</main>", page, flags=re.S)[1]
    # maths typeset by KaTeX, with no parse errors and no TeX source left in the visible text
    n_katex = len(re.findall(r'class="katex"', main))
    assert n_katex >= 30 and len(re.findall(r'class="katex-display"', main)) >= 6, n_katex
    assert "katex-error" not in main
    text = visible_text(main)
    assert "$$" not in text and "\\odot" not in text and "\\operatorname" not in text
    # the figure is embedded, with its caption
    assert re.search(r'<img\b[^>]*\bsrc="data:image/png;base64,[A-Za-z0-9+/]{1000}', main)
    assert '<figcaption class="fig-cap">Left to right: a base weight' in main
    # show_doc entries of the exported functions, hidden cells gone, links between pages resolved
    for name in ("masked_weight", "gated_delta_linear", "gatespec", "group_sizes", "expand_gqa"): assert f'id="{name}"' in main, name
    assert "#|" not in text and "from nbdev.showdoc import" not in main
    assert 'href="carrier.html"' in main and 'href="gates.html"' in main
    shot = tmp_path/"equivalence.png"
    r = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path/'profile2'}",
                        "--virtual-time-budget=10000", "--window-size=1280,2000", f"--screenshot={shot}", path.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 100_000, r.stderr[-2000:]


def _module_pages() -> list[tuple[str, str]]:
    "(notebook, module) for every sidebar notebook that exports a module."
    import nbformat
    out = []
    for f in (f for _, fs in docs_config.sidebar() for f in fs if f.endswith(".ipynb") and (docs_config.NBS/f).exists()):
        src = "\n".join(c.source for c in nbformat.read(docs_config.NBS/f, as_version=4).cells if c.cell_type == "code")
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", src, flags=re.M)
        if m: out.append((f, m[1]))
    return out


@pytest.mark.parametrize("nb,module", _module_pages())
def test_exports_documented(site, nb, module):
    "Each exported function/class has a show_doc entry on its page, and each exported constant is named in the page's prose."
    out, log, _ = site
    assert (out/page_of(nb)).exists(), f"{page_of(nb)} was not rendered:\n{log[-3000:]}"
    page = (out/page_of(nb)).read_text(encoding="utf-8")
    ids = set(re.findall(r'<h[1-4] id="([^"]+)"', page))
    prose = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(pre|script|style)\b.*?</\1>", " ", page, flags=re.S)))
    mod = importlib.import_module(f"sft_reverse_nb.{module}")
    missing = [name for name in getattr(mod, "__all__", [])
               if not (name.lower() in ids if inspect.isfunction(getattr(mod, name)) or inspect.isclass(getattr(mod, name)) else name in prose)]
    assert not missing, f"exported by {nb} but not documented on {page_of(nb)}: {', '.join(missing)}"


def test_stored_outputs_are_tidy():
    "The pages show what a reader needs: no progress bars or library warnings (stderr), no machine paths in stored outputs."
    r = subprocess.run([sys.executable, str(ROOT/".ci"/"tidy_outputs.py"), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
