"""The run report, the budget sweep and the durability rows through the `sftr` console script on the tiny preset, and the
report opened in headless Chromium (13_report, 14_tradeoffs). Chromium: `apt-get install -y chromium`; in CI (`CI` set) a
missing browser fails the browser check, elsewhere it skips."""
import json
import os
import re
import shutil
import subprocess

import pytest

INSTALL = "apt-get install -y chromium"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def sftr(*args):
    return subprocess.run(["sftr", *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SFTR_NO_PROGRESS": "1"})


def browser() -> str:
    for b in (os.environ.get("CHROMIUM"),) + BROWSERS:
        if b and shutil.which(b): return shutil.which(b)
    msg = f"Chromium is not installed; install it with `{INSTALL}` (Debian/Ubuntu, as root)"
    if os.environ.get("CI"): pytest.fail(msg + " -- CI must run this check, not skip it")
    pytest.skip(msg)


def dom(url: str, tmp_path) -> str:
    "The DOM of the page after its scripts ran."
    r = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path/'profile'}",
                        "--virtual-time-budget=10000", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "<html" in r.stdout, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A finished tiny run (short stages, 6 held-out prompts, also in the sweep's sub-runs), evaluated with the durability rows."
    run = tmp_path_factory.mktemp("report")/"run"
    for args in (("sft", run, "--preset", "tiny", "--steps", "25", "--n-eval", "6"), ("lcdd", run, "--steps", "60"), ("erase", run, "--steps", "30"),
                 ("eval", run, "--utility", "none", "--durability", "--durability-steps", "3")):
        r = sftr(*args)
        assert r.returncode == 0, r.stderr
    return run, r.stdout


def test_durability_rows(run):
    run, out = run
    res = json.loads((run/"eval"/"results.json").read_text())
    rows = {r["name"]: r for r in res["durability"]["rows"]}
    assert list(rows) == ["reference", "bf16", "int8", "lora-ft-3", "trigger-nearest-tokens", "trigger-random-norm-matched"]
    assert (rows["reference"]["no_trigger"], rows["reference"]["with_trigger"]) == \
        (res["conditions"]["lcdd"]["fixed_response_rate"], res["conditions"]["trig"]["fixed_response_rate"])
    assert rows["lora-ft-3"]["steps"] == 3 and rows["trigger-random-norm-matched"]["model"] == "sft"
    assert "| int8 |" in out and (run/"eval"/"figures"/"durability.png").exists()
    assert "## Durability" in (run/"eval"/"report.md").read_text()


def test_report_in_chromium(run, tmp_path):
    run, _ = run
    (run/"eval"/"report.html").unlink()
    r = sftr("report", run)
    assert r.returncode == 0 and "report.html" in r.stdout, r.stderr
    page = dom((run/"eval"/"report.html").as_uri(), tmp_path)
    table = re.search(r'<table id="results">.*?</table>', page, flags=re.S)[0]
    assert all(f"<td>{c}</td>" in table for c in ("base", "sft", "lcdd", "trig")) and "keyword:fixed_response_rate" in page
    imgs = re.findall(r"<img [^>]*>", page)
    assert len(imgs) == 5 and all('data-rendered="1"' in i for i in imgs), imgs   # every embedded figure decoded
    assert re.search(r'<table id="durability">.*?lora-ft-3', page, flags=re.S)
    rows = re.findall(r'<tr data-disagree="(\d)" data-sftlcdd="(\d)" data-basetrig="(\d)"[^>]*>', page)
    assert len(rows) == 6 and re.search(r'<span id="n-shown">6</span>', page)
    n_sftlcdd = sum(r[1] == "1" for r in rows)
    filtered = dom((run/"eval"/"report.html").as_uri() + "#sftlcdd", tmp_path)   # the filter preselected from the address
    assert f'<span id="n-shown">{n_sftlcdd}</span>' in filtered
    shown = re.findall(r'<tr data-disagree="\d" data-sftlcdd="(\d)" data-basetrig="\d"( style="display: none;")?>', filtered)
    assert all((s == "1") == (hidden == "") for s, hidden in shown) and len(shown) == 6


def test_sweep(run):
    run, _ = run
    r = sftr("sweep", run, "--rho", "1.0")                          # one point here; two in 14_tradeoffs
    assert r.returncode == 0, r.stderr
    sw = json.loads((run/"sweep.json").read_text())
    assert [p["value"] for p in sw["points"]] == [1.0] and sw["param"] == "rho"
    for p in sw["points"]:
        assert {"value", "sparsity", "lcdd", "trig", "kl_sft_lcdd", "run", "pareto"} <= set(p) and (run/p["run"]/"eval"/"report.html").exists()
    assert sw["points"][0]["pareto"] and (run/"sweep.png").exists() and "| 1.0 |" in r.stdout
    assert '<table id="sweep">' in (run/"eval"/"report.html").read_text()        # the run's page shows the sweep
    assert json.loads((run/sw["points"][0]["run"]/"config.json").read_text())["lcdd"]["rho"] == 1.0
    r = sftr("sweep", run, "--rho", "1.0")                          # a finished point is skipped
    assert r.returncode == 0 and r.stdout.count("is complete; skipping") == 1, r.stdout
    r = sftr("sweep", run, "--set", "nonsense", "1")
    assert r.returncode == 2 and "nonsense" in r.stderr
