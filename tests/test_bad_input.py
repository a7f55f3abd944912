"""Bad inputs to `sftr sft` / `sftr lcdd` / `sftr erase` / `sftr eval`: each case must fail with the right error type, a message that names the problem and
the fix, and leave no partial artefact behind (nothing written at all when the configuration itself is invalid).

The cases run the subcommands' own functions in-process (what `sftr` calls after parsing; `main` only adds the
`sftr CMD: error: ...` line and exit status 2, checked once at the end)."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from sft_reverse_nb.arch import tiny_model
from sft_reverse_nb.cli import build_parser, main
from sft_reverse_nb.data import tiny_tokenizer
from sft_reverse_nb.pipeline import get_preset

os.environ["SFTR_NO_PROGRESS"] = "1"
ARTEFACTS = ("complete.json", "model.safetensors", "carrier.safetensors", "carrier.json", "trigger.safetensors", "trigger.json",
             "results.json", "report.md")


def sftr(*argv):
    "Run a subcommand's function as `sftr` would, letting its exception through."
    args = build_parser().parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "Inputs shared by the cases: bad data files, foreign or mismatched checkpoints, a finished tiny run."
    t = tmp_path_factory.mktemp("inputs")
    (t / "empty.json").write_text("  \n")
    (t / "corrupt.json").write_text('[{"instruction": "hi", ')
    (t / "cols.json").write_text(json.dumps([{"q": f"question {i}", "a": "answer"} for i in range(80)]))
    (t / "shakespeare").mkdir()
    (t / "shakespeare" / "train.modern").write_text("how are you\nwhere is he\ngood night\n")
    (t / "shakespeare" / "train.original").write_text("how dost thou\nwhere is he\n")
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(t / "gpt2")
    tiny_model("llama").save_pretrained(t / "no_template"); tiny_tokenizer(chat_template=None).save_pretrained(t / "no_template")
    tiny = tiny_model("llama").config
    for name, kw in (("other_size", {"vocab_size": tiny.vocab_size - 29}), ("untied", {"tie_word_embeddings": not tiny.tie_word_embeddings})):
        transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**tiny.to_dict(), **kw})).save_pretrained(t / name)
    for name, sft in (("mp_fp8", {"mixed_precision": "fp8"}), ("mp_fp16", {"mixed_precision": "fp16"}), ("typo", {"lerning_rate": 1e-3}),
                      ("short", {"max_len": 8})):
        (t / f"{name}.json").write_text(json.dumps({**get_preset("tiny"), "sft": {**get_preset("tiny")["sft"], **sft}}))
    done = t / "done"                                   # a finished tiny run: SFT, then LCDD
    assert main(["sft", str(done), "--preset", "tiny", "--steps", "3"]) == 0
    assert main(["lcdd", str(done), "--steps", "3"]) == 0
    return t


def _unfinished_sft(run: Path, t: Path):
    "A run whose SFT stage was killed: a training state and metrics, no complete.json."
    from sft_reverse_nb.pipeline import run_config
    run_config(run, "tiny")
    shutil.copytree(t / "done" / "sft", run / "sft")
    (run / "sft" / "complete.json").unlink(); (run / "sft" / "model.safetensors").unlink()


def _damaged_carrier(run: Path, t: Path):
    shutil.copytree(t / "done", run)
    (run / "lcdd" / "carrier.safetensors").write_bytes(b"\x00garbage, not safetensors")


def _finished(run: Path, t: Path): shutil.copytree(t / "done", run)

def _no_write_channels(run: Path, t: Path):
    "A finished carrier whose every write gate is closed."
    from safetensors.torch import load_file, save_file
    shutil.copytree(t / "done", run)
    g = load_file(run / "lcdd" / "carrier.safetensors")
    for k in g:
        if k.endswith(("ffn_write", "attn_write")): g[k] = -g[k].abs() - 1
    save_file(g, run / "lcdd" / "carrier.safetensors")
    from sft_reverse_nb.provenance import mark_complete  # recorded as finished: a legitimate carrier, not a tampered one
    rec = json.loads((run / "lcdd" / "complete.json").read_text())
    mark_complete(run / "lcdd", {"stage": "lcdd"}, rec["inputs"], rec["weights"])

def _foreign_trigger(run: Path, t: Path):
    "A finished run with a trigger made for a model of another width."
    from sft_reverse_nb.eraser import Trigger
    from sft_reverse_nb.provenance import mark_complete
    shutil.copytree(t / "done", run)
    Trigger(torch.randn(4, 32), {"model": "some-other-model"}).save(run / "trigger"); mark_complete(run / "trigger")

def _config_only(run: Path, t: Path):
    from sft_reverse_nb.pipeline import run_config
    run_config(run, "tiny")


# (id, argv with {run} and {t} placeholders, setup, error type, substrings: the problem and the fix, what must not exist afterwards)
# `nothing` = the run directory must not even hold a config.json: the bad setting was refused before anything was written.
CASES = [
    ("unsupported-architecture", "sft {run} --preset tiny --model {t}/gpt2", None, ValueError,
     ["Unsupported architecture 'GPT2LMHeadModel'", "Supported: Gemma2ForCausalLM, Gemma3ForCausalLM, LlamaForCausalLM", "register_architecture"], "sft"),
    ("base-sft-shape-mismatch", "lcdd {run} --preset tiny --sft {t}/other_size", None, ValueError,
     ["has shape (259, 64) in the SFT model but (288, 64) in the base model", "load the matching base checkpoint"], "lcdd"),
    ("base-sft-tied-embeddings-differ", "lcdd {run} --preset tiny --sft {t}/untied", None, ValueError,
     ["'lm_head.weight' is separate in the SFT model only", "tie_word_embeddings differs", "load the matching base checkpoint"], "lcdd"),
    ("missing-data-file", "sft {run} --preset tiny --data {t}/missing.json", None, FileNotFoundError,
     ["missing.json does not exist", "check the path (CLI: --data)"], "sft"),
    ("empty-data-file", "sft {run} --preset tiny --data {t}/empty.json", None, ValueError,
     ["empty.json is empty", "one example per row"], "sft"),
    ("corrupt-json", "sft {run} --preset tiny --data {t}/corrupt.json", None, ValueError,
     ["corrupt.json is not valid JSON", "fix the file"], "sft"),
    ("wrong-columns", "sft {run} --preset tiny --data {t}/cols.json", None, ValueError,
     ["has columns ['a', 'q']", "rename the prompt column to 'instruction'"], "sft"),
    ("misaligned-shakespeare", "sft {run} --preset tiny --task shakespeare --data {t}/shakespeare", None, ValueError,
     ["train.modern has 3 lines but", "train.original has 2", "must be line-aligned"], "sft"),
    ("no-chat-template", "sft {run} --preset tiny --model {t}/no_template", None, ValueError,
     ["has no chat template", "--fallback-template"], "sft"),
    ("nan-loss", "sft {run} --preset tiny --lr 1e30 --steps 5", None, FloatingPointError,
     ["sft: non-finite loss (nan) at step", "Lower the learning rate"], "sft"),
    ("lcdd-without-sft", "lcdd {run} --preset tiny", None, ValueError,
     ["is not a completed SFT run", "run `sftr sft", "or pass --sft PATH"], "lcdd"),
    ("lcdd-after-unfinished-sft", "lcdd {run}", _unfinished_sft, ValueError,
     ["sft is not a completed SFT run", "run `sftr sft"], "lcdd"),
    ("lcdd-sft-path-missing", "lcdd {run} --preset tiny --sft {t}/nowhere", None, FileNotFoundError,
     ["nowhere is not a Hugging Face checkpoint (it does not exist)", "pass a directory holding config.json"], "lcdd"),
    ("lcdd-sft-is-a-run-directory", "lcdd {run} --preset tiny --sft {t}/done", None, ValueError,
     ["has no model_type", "it is a run directory: pass", "done/sft"], "lcdd"),
    ("corrupt-carrier", "lcdd {run}", _damaged_carrier, ValueError,
     ["is marked complete but an artefact in it is damaged", "carrier.safetensors", "Delete", "rerun `sftr lcdd`"], None),
    ("invalid-preset", "sft {run} --preset nope", None, ValueError, ["unknown preset 'nope'", "choose one of", "tiny"], "nothing"),
    ("invalid-dtype", "sft {run} --preset tiny --dtype float8", None, ValueError, ["unknown dtype 'float8'", "use one of", "bfloat16"], "nothing"),
    ("invalid-device", "sft {run} --preset tiny --device gpu7", None, ValueError,
     ["unknown device 'gpu7'", "use 'auto', 'cpu', 'cuda' or 'cuda:N'"], "nothing"),
    ("unavailable-device", "sft {run} --preset tiny --device cuda", "no_cuda", ValueError,
     ["device 'cuda' requested but CUDA is not available here", "use --device cpu"], "sft"),
    ("invalid-mixed-precision", "sft {run} --config {t}/mp_fp8.json", None, ValueError,
     ["mixed_precision must be 'no', 'bf16' or 'fp16', got 'fp8'"], "nothing"),
    ("unknown-option", "sft {run} --config {t}/typo.json", None, ValueError,
     ["unknown TrainConfig option(s) ['lerning_rate']", "valid:", "'lr'"], "nothing"),
    ("zero-batch-size", "sft {run} --preset tiny --batch-size 0", None, ValueError,
     ["batch_size must be an integer >= 1, got 0"], "nothing"),
    ("lambda0-out-of-bounds", "lcdd {run} --preset tiny --lambda0 100", None, ValueError,
     ["lambda0=100.0 is outside [lambda_min=1e-06, lambda_max=10.0]", "choose lambda0 inside the bounds"], "nothing"),
    ("deepspeed-zero3-launch", "sft {run} --preset tiny", "deepspeed", ValueError,
     ["asks for DeepSpeed ZeRO stage 3", "run ZeRO-1 or ZeRO-2", "launch with examples/accelerate/fsdp.yaml"], "sft"),
    ("fsdp-version-1", "sft {run} --preset tiny", "fsdp1", ValueError,
     ["asks for FSDP version 1", "set `fsdp_version: 2`", "examples/accelerate/fsdp.yaml"], "sft"),
    ("fsdp-with-fp16", "sft {run} --config {t}/mp_fp16.json", "fsdp2", ValueError,
     ["mixed_precision='fp16' is not supported with FSDP", "use 'bf16'"], "sft"),
    ("max-len-cuts-every-response", "sft {run} --config {t}/short.json", None, ValueError,
     ["none of the 64 training examples has a labelled token within max_len=8", "raise max_len"], "sft"),
    ("erase-before-lcdd", "erase {run}", _config_only, ValueError, ["is not a completed LCDD run", "run `sftr lcdd"], "trigger"),
    ("erase-not-a-run", "erase {run}", None, FileNotFoundError, ["is not a run directory (no config.json)", "sftr sft"], "nothing"),
    ("erase-carrier-without-write-channels", "erase {run} --steps 3", _no_write_channels, ValueError,
     ["no active write channels", "output-only", "--output-only"], "trigger"),
    ("erase-trigger-longer-than-context", "erase {run} --n-tokens 100000", _finished, ValueError,
     ["trigger (100000 tokens) + longest prompt", "exceeds the model's context", "use fewer trigger tokens"], "trigger"),
    ("eval-wrong-model-trigger", "eval {run} --conditions trig --no-kl --utility none --n 2", _foreign_trigger, ValueError,
     ["trained on 'some-other-model' (d_model 32) but the model has d_model 64", "train a new one with `sftr erase`"], "eval"),
    ("eval-prompts-file-missing", "eval {run} --prompts {t}/missing.txt --conditions lcdd", _finished, FileNotFoundError,
     ["missing.txt does not exist", "check the path"], "eval-missing"),
]


PARAMS = [pytest.param(*c, id=c[0]) for c in CASES]


@pytest.mark.parametrize("name,argv,setup,exc,needles,stage", PARAMS)
def test_bad_input(name, argv, setup, exc, needles, stage, files, tmp_path, monkeypatch):
    run = tmp_path / "run"
    if setup == "no_cuda": monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    elif setup in ("deepspeed", "fsdp1", "fsdp2"):     # what `accelerate launch` with such a config gives on GPUs
        import accelerate
        from types import SimpleNamespace
        from accelerate.utils import DistributedType
        from torch.distributed.fsdp import OffloadPolicy
        plugin = SimpleNamespace(fsdp_version=int(setup[-1]) if setup != "deepspeed" else 2, reshard_after_forward=True, cpu_offload=OffloadPolicy(),
                                 zero_stage=3, deepspeed_config={"zero_optimization": {"stage": 3}})
        class LaunchedAccelerator:
            def __init__(self, *a, **k):
                self.distributed_type = DistributedType.DEEPSPEED if setup == "deepspeed" else DistributedType.FSDP
                self.num_processes, self.process_index, self.state = 2, 0, SimpleNamespace(fsdp_plugin=plugin, deepspeed_plugin=plugin)
        monkeypatch.setattr(accelerate, "Accelerator", LaunchedAccelerator)
    elif setup: setup(run, files)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")} if run.exists() else {}
    config_before = (run / "config.json").read_bytes() if (run / "config.json").exists() else None
    with pytest.raises(exc) as e:
        sftr(*argv.format(run=run, t=files).split())
    msg = str(e.value)
    for s in needles: assert s in msg, f"{name}: {s!r} not in {msg!r}"
    assert not [p for p in run.rglob(".*") if p.name.endswith(".tmp") or p.name == ".checkpoint"], "temporaries left behind"
    if config_before is not None:                       # the run's recorded configuration is an artefact too: a refused command leaves it alone
        assert (run / "config.json").read_bytes() == config_before, f"{name}: the failed command changed the run's config.json"
    if stage == "nothing": assert not run.exists() or not any(run.iterdir()), sorted(run.rglob("*"))
    elif stage:
        d = run / stage
        assert not [a for a in ARTEFACTS if (d / a).exists() and d / a not in before], f"partial artefact in {d}"
        if stage == "lcdd" and not (d / "metrics.jsonl").exists(): assert not d.exists(), "an empty stage directory marks the stage as started"
    else:   # a finished run: nothing in it was modified
        assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_main_reports_errors_with_exit_status_2(tmp_path, capsys):
    assert main(["sft", str(tmp_path / "r"), "--preset", "nope"]) == 2
    assert "sftr sft: error: unknown preset 'nope'; choose one of:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:                 # values with fixed choices are refused by the parser itself
        main(["sft", str(tmp_path / "r"), "--preset", "tiny", "--mixed-precision", "fp8"])
    assert e.value.code == 2 and "argument --mixed-precision: invalid choice: 'fp8' (choose from" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
