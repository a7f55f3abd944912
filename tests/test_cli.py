"""End-to-end checks of the `sftr` console script, run as a user runs it (a subprocess)."""
import json
import subprocess
from pathlib import Path

import pytest

from sft_reverse_nb.arch import tiny_model


def sftr(*args):
    return subprocess.run(["sftr", *args], capture_output=True, text=True, timeout=600)


def test_info_environment():
    r = sftr("info")
    assert r.returncode == 0, r.stderr
    assert ("supported architectures: Gemma2ForCausalLM, Gemma3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Olmo2ForCausalLM, "
            "Phi3ForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM") in r.stdout
    assert "device: " in r.stdout


def test_info_embedded_model_layout():
    r = sftr("info", "--model", "smollm2", "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["model"]
    assert (m["arch"], m["n_layers"], m["d_model"], m["d_ff"], m["n_heads"], m["n_kv_heads"], m["head_dim"]) == \
        ("LlamaForCausalLM", 30, 576, 1536, 9, 3, 64)
    assert m["projections"]["k_proj"] == [192, 576] and m["projections"]["down_proj"] == [576, 1536]
    assert m["gates_per_layer"] == 4 * 576 + 1536 + 9 * 64 + 2 * 3 * 64 == sum(m["gate_groups"].values())


def test_info_local_checkpoint_text(tmp_path):
    tiny_model("mistral").save_pretrained(tmp_path / "m")
    r = sftr("info", "--model", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    assert "MistralForCausalLM (mistral): 2 layers" in r.stdout and "4 heads / 2 KV heads" in r.stdout


def test_info_unsupported_and_missing(tmp_path):
    import transformers
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(tmp_path / "g")
    r = sftr("info", "--model", str(tmp_path / "g"))
    assert r.returncode == 2 and "Unsupported architecture 'GPT2LMHeadModel'" in r.stderr and "Supported: Gemma2ForCausalLM, Gemma3ForCausalLM, LlamaForCausalLM" in r.stderr
    r = sftr("info", "--model", str(tmp_path / "nothing-here"))
    assert r.returncode == 2 and "sftr info: error" in r.stderr


def test_only_working_subcommands_are_registered():
    from sft_reverse_nb.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == ["demo", "erase", "eval", "info", "lcdd", "report", "run", "sft", "sweep"]
    r = sftr("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("info", "sft", "lcdd", "erase", "eval", "run", "demo"))
    r = sftr("frobnicate")
    assert r.returncode == 2 and "invalid choice: 'frobnicate'" in r.stderr


def test_sft_then_lcdd_on_the_tiny_preset(tmp_path):
    run = tmp_path / "run"
    env_steps = ["--steps", "25"]
    r = sftr("sft", str(run), "--preset", "tiny", *env_steps)
    assert r.returncode == 0, r.stderr
    assert "sft: done" in r.stdout and (run / "sft" / "complete.json").exists()
    r = sftr("lcdd", str(run), "--steps", "40", "--lambda0", "2.0")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["sft"]["steps"], cfg["lcdd"]["steps"], cfg["lcdd"]["lambda0"]) == (25, 40, 2.0)
    carrier = json.loads((run / "lcdd" / "carrier.json").read_text())
    assert "lcdd: done. sparsity" in r.stdout and 0.0 < carrier["sparsity"] <= 1.0
    assert {"dynamics.png", "carrier_map.png", "model.safetensors", "carrier.safetensors"} <= {p.name for p in (run / "lcdd").iterdir()}
    assert not list(run.rglob("*.bin")) and not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl"))
    # a finished stage is skipped, and a started stage refuses a contradicting setting
    r = sftr("sft", str(run))
    assert r.returncode == 0 and "complete; skipping" in r.stdout
    r = sftr("lcdd", str(run), "--steps", "41")
    assert r.returncode == 2 and "lcdd.steps: run has 40, asked 41" in r.stderr


def test_bad_preset_and_missing_sft(tmp_path):
    r = sftr("sft", str(tmp_path / "a"), "--preset", "nope")
    assert r.returncode == 2 and "unknown preset 'nope'" in r.stderr and "cpu-smollm2" in r.stderr
    r = sftr("lcdd", str(tmp_path / "b"), "--preset", "tiny")
    assert r.returncode == 2 and "is not a completed SFT run" in r.stderr and "sftr sft" in r.stderr


def _at_dev_data(value):
    "The example configs name the workspace's data as `../shared/data/...` (relative to the repository root); the same files wherever `dev_data_dir` finds them."
    from sft_reverse_nb.data import dev_data_dir
    if isinstance(value, str) and value.startswith("../shared/data/"): return str(dev_data_dir() / value[len("../shared/data/"):])
    if isinstance(value, list): return [_at_dev_data(v) for v in value]
    if isinstance(value, dict): return {k: _at_dev_data(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("example", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.json")))
def test_example_configs_load_as_shipped(example):
    "The shipped example configurations resolve as a user passes them (`_comment` keys are comments) and their tasks load from the data they name."
    from sft_reverse_nb.pipeline import resolve_config, build_task
    root = Path(__file__).resolve().parents[1]
    cfg = resolve_config(config_file=root / "examples" / "configs" / example)
    assert "_comment" not in cfg and cfg["model"] == "smollm2"
    task = build_task(_at_dev_data(cfg["task"]))
    assert len(task.eval_prompts) >= 100, len(task.eval_prompts)          # the targets ask for n >= 100 held-out prompts per condition
    assert not set(task.eval_prompts) & {p for p, _ in task.train}


def _tiny_config_like(example: str, tmp_path) -> Path:
    "The example configuration `example` on the tiny model with few steps, its data paths pointed at the development data."
    from sft_reverse_nb.data import dev_data_dir
    from sft_reverse_nb.pipeline import get_preset
    sd, root = dev_data_dir(), Path(__file__).resolve().parents[1]
    shipped = json.loads((root / "examples" / "configs" / example).read_text())
    cfg = {k: _at_dev_data(v) for k, v in shipped.items() if not k.startswith("_")}
    tiny = get_preset("tiny")
    cfg.update(model=tiny["model"], base=tiny["base"], dtype="float32", device="cpu")
    t = cfg["task"]
    if t["name"] == "safety": t.update(harmful=[str(sd / "safety" / "harmful_train.json")], benign=str(sd / "alpaca" / "alpaca_5000.json"), n_train=16, n_eval=8)
    else: t.update(source=str(sd / "shakespeare"), n_train=32, n_eval=8)
    cfg["sft"], cfg["lcdd"], cfg["erase"] = ({**tiny[k], "steps": 6, "save_every": 3} for k in ("sft", "lcdd", "erase"))
    cfg["lcdd"].update(sparsity_warmup=2, budget=shipped["lcdd"].get("budget", "ce"))
    if shipped["lcdd"].get("off_task_source"):         # the shipped path: off-task rows and the trigger's pool from an instruction file
        cfg["lcdd"].update(off_task_source=_at_dev_data(shipped["lcdd"]["off_task_source"]), off_task_answers=4,
                           logratio_weight=shipped["lcdd"].get("logratio_weight", 0.0))
    if shipped["erase"].get("prompt_source"): cfg["erase"]["prompt_source"] = _at_dev_data(shipped["erase"]["prompt_source"])
    cfg["eval"] = {**cfg["eval"], "mixed_precision": "no", "max_new_tokens": 8, "batch_size": 4, "n_references": 6,
                   "references": str(sd / "alpaca" / "alpaca_5000.json")}
    path = tmp_path / example
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("example", ["safety-smollm2-cpu.json", "shakespeare-smollm2-cpu.json"])
def test_eval_on_a_prompt_file_for_the_example_tasks(tmp_path, example):
    "`sftr run --config` then `sftr eval RUN --prompts FILE --n N` with the Safety and Shakespeare example configs (tiny model): the judged measures per condition."
    run = tmp_path / "run"
    r = sftr("run", "--config", str(_tiny_config_like(example, tmp_path)), "--out", str(run))
    assert r.returncode == 0, r.stderr[-3000:]
    (tmp_path / "mine.txt").write_text("Write a poem about the sea.\nHow do I bake bread?\nWhat is a comet?\nName three rivers.\n")
    r = sftr("eval", str(run), "--prompts", str(tmp_path / "mine.txt"), "--n", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((run / "eval-mine" / "results.json").read_text())
    assert res["n_prompts"] == 3 and set(res["conditions"]) == {"base", "sft", "lcdd", "trig"}
    measures = {"refusal_rate", "over_refusal_rate", "ref_nll"} if example.startswith("safety") else {"style_score", "archaic_rate", "ref_nll"}
    for name, m in res["conditions"].items():
        assert measures <= set(m), (name, sorted(m))
        assert 0 <= m.get("style_score", 0) <= 1 and m["ref_nll"] > 0
    assert set(res["judges"]) == measures - {"refusal_rate", "archaic_rate"}
    report = (run / "eval-mine" / "report.md").read_text()
    if example.startswith("safety"): assert "over_refusal_rate @SFT" in report and "keyword:refusal_rate on 3 benign prompts" in report
    else: assert "style_score @Trig" in report and "`style_score`: style-classifier:" in report
    if example.startswith("shakespeare"):              # the same classifier scores the run's own evaluation and the prompt file's
        assert json.loads((run / "eval" / "results.json").read_text())["judges"]["style_score"] == res["judges"]["style_score"]


def _tiny_lm_eval_task(folder, items):
    "A local lm-evaluation-harness multiple-choice task (json data, no hub), as a user adds one with --lm-eval-include."
    (folder / "tiny_mc.jsonl").write_text("\n".join(json.dumps(it) for it in items))
    (folder / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(folder / "tiny_mc.jsonl") + "\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\n'
        "metric_list:\n  - metric: acc\n")


def test_eval_utility_through_lm_eval_for_every_condition(tmp_path):
    "`sftr eval --utility lm-eval:TASK` scores every condition (the triggered one through the trigger wrapper) with the harness."
    from sft_reverse_nb.evaluation import builtin_mc
    run, tasks = tmp_path / "run", tmp_path / "tasks"
    tasks.mkdir()
    _tiny_lm_eval_task(tasks, builtin_mc()[:5])
    r = sftr("run", "--preset", "tiny", "--out", str(run))
    assert r.returncode == 0, r.stderr
    r = sftr("eval", str(run), "--conditions", "base", "sft", "trig", "--no-kl", "--n", "2", "--utility", "lm-eval:tiny_mc",
             "--lm-eval-include", str(tasks))
    assert r.returncode == 0, r.stderr
    res = json.loads((run / "eval" / "results.json").read_text())
    assert set(res["utility"]) == {"base", "sft", "trig"} and res["utility_source"] == "lm-evaluation-harness tasks tiny_mc"
    assert all(0.0 <= u["tiny_mc acc"] <= 1.0 for u in res["utility"].values())
    assert "utility tiny_mc acc" in (run / "eval" / "report.md").read_text()
