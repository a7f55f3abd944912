"""`.ci/check_demo.py` (the `--slow` check that the real-model table in the README is what `sftr demo` measures), tested on
fabricated results.json files against the real README: the demo itself takes 11–20 minutes and runs only under `bash .ci/run --slow`."""
import importlib.util
import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def check(repo_root):
    spec = importlib.util.spec_from_file_location("check_demo", repo_root / ".ci" / "check_demo.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def fabricated(row: dict, **changes) -> dict:
    "A results.json that reproduces `row` (README units), with `changes` applied in README units."
    r = {**row, **changes}
    res = {"task": "fixed_response", "metric": "fixed_response_rate", "n_prompts": 100, "sparsity": r["sparsity"] / 100,
            "conditions": {c: {"fixed_response_rate": r[f"rate_{c}"] / 100} for c in ("base", "sft", "lcdd", "trig")},
            "kl": {"sft_lcdd": r["kl_sft_lcdd"], "sft_trig": r["kl_sft_trig"], "base_trig": r["kl_base_trig"]}}
    for c in ("base", "sft", "lcdd", "trig"): res["conditions"][c]["ref_nll"] = r[f"nll_{c}"]
    return res


def run(repo_root, tmp_path, res: dict):
    (tmp_path / "results.json").write_text(json.dumps(res))
    return subprocess.run([sys.executable, str(repo_root / ".ci" / "check_demo.py"), str(tmp_path / "results.json")], capture_output=True, text=True)


def test_reads_the_readme_table(check, repo_root):
    row = check.readme_row(repo_root / "README.md")
    assert row == {"sparsity": 88.9, "rate_base": 0.0, "rate_sft": 100.0, "rate_lcdd": 100.0, "rate_trig": 1.0,
                   "kl_sft_lcdd": 0.0181, "kl_sft_trig": 1.37, "kl_base_trig": 0.65,
                   "nll_base": 1.440, "nll_sft": 5.206, "nll_lcdd": 2.205, "nll_trig": 1.439}, row


def test_a_matching_run_passes(check, repo_root, tmp_path):
    row = check.readme_row(repo_root / "README.md")
    r = run(repo_root, tmp_path, fabricated(row, rate_trig=3.0, kl_sft_trig=1.2, kl_sft_lcdd=0.0175, nll_trig=1.46))   # inside every tolerance
    assert r.returncode == 0 and "reproduces the README table" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("change,needle", [({"rate_trig": 11.0}, "rate_trig: README 1, measured 11"),
                                           ({"kl_sft_trig": 2.1}, "kl_sft_trig: README 1.37, measured 2.1"),
                                           ({"nll_trig": 1.6}, "nll_trig: README 1.439, measured 1.6"),
                                           ({"kl_sft_lcdd": 0.0050}, "kl_sft_lcdd"),
                                           ({"sparsity": 87.5}, "sparsity: README 88.9, measured 87.5"),
                                           ({"rate_lcdd": 90.0}, "rate_lcdd")])
def test_a_drifted_run_fails_naming_the_number(check, repo_root, tmp_path, change, needle):
    r = run(repo_root, tmp_path, fabricated(check.readme_row(repo_root / "README.md"), **change))
    assert r.returncode == 1 and needle in r.stderr, r.stdout + r.stderr


def test_wrong_prompt_count_and_incomplete_results(check, repo_root, tmp_path):
    res = fabricated(check.readme_row(repo_root / "README.md")); res["n_prompts"] = 16
    r = run(repo_root, tmp_path, res)
    assert r.returncode == 1 and "n_prompts: README 100, measured 16" in r.stderr, r.stderr
    del res["kl"]
    r = run(repo_root, tmp_path, res)
    assert r.returncode == 2 and "results.json lacks 'kl'" in r.stderr, r.stderr


def test_an_edited_readme_table_is_caught(check, repo_root, tmp_path):
    "Editing the published numbers without rerunning the demo fails the check."
    text = (repo_root / "README.md").read_text()
    assert "| 88.9 % | 0.0 % | 100.0 % | 100.0 % | 1.0 % |" in text
    (tmp_path / "README.md").write_text(text.replace("| 88.9 % | 0.0 % | 100.0 % | 100.0 % | 1.0 % |", "| 88.9 % | 0.0 % | 100.0 % | 100.0 % | 0.0 % |"))
    res = fabricated(check.readme_row(repo_root / "README.md"))
    assert check.compare(check.readme_row(tmp_path / "README.md"), check.measured(res)) == []   # 0 % vs 1 %: inside 3 points
    assert text.count("| 1.37 |") == 1
    (tmp_path / "README.md").write_text(text.replace("| 1.37 |", "| 0.5 |"))
    assert [b.split(":")[0] for b in check.compare(check.readme_row(tmp_path / "README.md"), check.measured(res))] == ["kl_sft_trig"]


def test_the_stored_demo_outputs_are_the_readme_run(check, repo_root):
    "10_demo's stored results table (the run its figures come from) must be the run the README publishes, within the same tolerances."
    nb = json.loads((repo_root / "nbs" / "10_demo.ipynb").read_text())
    tables = ["".join(o["data"]["text/markdown"]) for c in nb["cells"] if c["cell_type"] == "code" and "#| slow" in "".join(c["source"])
              for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert len(tables) == 1, f"expected one stored results table in 10_demo's slow cells, found {len(tables)}"
    lines = tables[0].strip().splitlines()
    stored = check.table_row(lines[2], "10_demo", header=lines[0])
    assert check.compare(check.readme_row(repo_root / "README.md"), stored) == []


def test_columns_are_found_by_their_headers(check):
    "The README's header (bare `@COND` continuing a metric) and `results_table`'s (metric on every column, KL(Base‖LCDD) last) name the same columns."
    readme = "| sparsity | fixed-response rate @Base | @SFT | @LCDD | @Trig | KL(SFT‖LCDD) | KL(SFT‖Trig) | KL(Base‖Trig) | reference NLL @Base | @SFT | @LCDD | @Trig |"
    table = ("| sparsity | fixed_response_rate @BASE | fixed_response_rate @SFT | fixed_response_rate @LCDD | fixed_response_rate @Trig | ref_nll @BASE | "
             "ref_nll @SFT | ref_nll @LCDD | ref_nll @Trig | KL(SFT‖LCDD) | KL(SFT‖Trig) | KL(Base‖Trig) | KL(Base‖LCDD) |")
    a, b = check.column_names(readme, "readme"), check.column_names(table, "table")
    assert set(a) == set(check.COLUMNS) and b[-1] is None and set(b[:-1]) == set(check.COLUMNS)
    row = check.table_row("| 88.3 % | 0.0 % | 100.0 % | 100.0 % | 2.0 % | 1.4 | 5.2 | 2.4 | 1.3 | 0.0027 | 1.03 | 1.72 | 6.7 |", "table", table)
    assert (row["nll_sft"], row["kl_base_trig"], row["rate_trig"]) == (5.2, 1.72, 2.0)
    with pytest.raises(ValueError, match="no column for nll_base"): check.column_names(readme.replace("reference NLL @Base | @SFT | @LCDD | @Trig |", ""), "old")
    with pytest.raises(ValueError, match="unknown demo table column 'utility @Base'"): check.column_names(readme + " utility @Base |", "x")
