"""The families beyond Llama/Mistral/Qwen (issue #21): Gemma 2, Gemma 3, Phi-3 (fused qkv_proj / gate_up_proj) and OLMo 2.

For each tiny random model: the layout and its gate groups, LCDD and the trigger end to end through the real trainers,
the carrier saved, reloaded and merged, and `sftr info --layout tiny:FAMILY`. The invariants (all on = SFT, all off = base,
random gates = independent weight masking) are checked for all eight families in nbs/03_carrier.ipynb."""
import json
import os
import subprocess

import pytest
import torch

from sft_reverse_nb.arch import layout_of, tiny_model
from sft_reverse_nb.equivalence import GATE_GROUPS

NEW_FAMILIES = ["gemma2", "gemma3", "phi3", "olmo2"]
N_TRAIN = 12


def lcdd_config():
    from sft_reverse_nb.lcdd import LCDDConfig
    return LCDDConfig(steps=6, batch_size=6, grad_accum=1, lr=3e-3, loss_on="response", rho=0.3, lambda0=2.0, eta=0.2,
                      eta_grow=0.05, v_clip=1.0, sparsity_warmup=2, eps_abs=0.05, gate_lr=0.5, save_every=3, device="cpu")


def eraser_config():
    from sft_reverse_nb.eraser import EraserConfig
    return EraserConfig(n_tokens=4, steps=4, batch_size=6, n_prompts=N_TRAIN, lr=3e-2, radius=4.0, k=4, save_every=2,
                        target_batch_size=6, device="cpu")


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_lcdd_and_trigger_end_to_end(family, tmp_path):
    os.environ["SFTR_NO_PROGRESS"] = "1"
    import transformers
    from sft_reverse_nb.carrier import Carrier, perturbed_copy
    from sft_reverse_nb.data import fixed_response, tiny_tokenizer
    from sft_reverse_nb.eraser import Trigger, train_trigger
    from sft_reverse_nb.lcdd import train_lcdd     # also patches Carrier.load_run
    tok, task = tiny_tokenizer(), fixed_response(n_train=N_TRAIN, n_eval=2)
    base = tiny_model(family, seed=3)
    sft = perturbed_copy(base, scale=0.2)
    carrier = train_lcdd(sft, tiny_model(family, seed=3), tok, task, tmp_path / "lcdd", lcdd_config())
    lay = carrier.layout
    assert lay.family == family and set(carrier.logits) == {f"layers.{i}.{g}" for i in range(lay.n_layers) for g in GATE_GROUPS}
    assert carrier.layout.n_gates == sum(p.numel() for p in carrier.gate_parameters())
    assert all(torch.isfinite(p).all() for p in carrier.gate_parameters() + carrier.delta_parameters())
    metrics = [json.loads(l) for l in (tmp_path / "lcdd" / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    # the written carrier model is the merged carrier; reloading the carrier onto a fresh SFT model gives the same logits
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "lcdd")
    assert type(merged).__name__ == lay.arch
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))
    reloaded = Carrier.load_run(tmp_path / "lcdd", perturbed_copy(tiny_model(family, seed=3), scale=0.2), tiny_model(family, seed=3))
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, reloaded.model(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
    trig = train_trigger(merged, tiny_model(family, seed=3), tok, [p for p, _ in task.train], tmp_path / "trigger", eraser_config(),
                         carrier=tmp_path / "lcdd")
    assert trig.embeds.shape == (4, lay.d_model) and torch.isfinite(trig.embeds).all()
    assert (trig.embeds.norm(dim=-1) <= 4.0 + 1e-4).all()                     # PGD kept every token in the ball
    again = Trigger.load(tmp_path / "trigger", merged)
    assert torch.equal(again.embeds, trig.embeds)
    assert len(again.generate(merged, tok, ["hello"], max_new_tokens=3)) == 1


def test_phi3_fused_modules_in_the_carrier_files(tmp_path):
    from sft_reverse_nb.carrier import Carrier, apply_compact, perturbed_copy
    from sft_reverse_nb.artefacts import load_tensors
    base = tiny_model("phi3"); sft = perturbed_copy(base)
    car = Carrier.attach(perturbed_copy(base), base)
    with torch.no_grad():
        for p in car.gate_parameters(): p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    car.save(tmp_path / "c")
    deltas = load_tensors(tmp_path / "c" / "carrier_delta.safetensors")
    assert sorted(deltas) == sorted(f"layers.{i}.{m}" for i in range(2) for m in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"))
    summary = json.loads((tmp_path / "c" / "carrier.json").read_text())["layout"]
    assert summary["fused"] == {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
    assert summary["gates"]["gate_up_proj"] == {"row": ["ffn_hidden", "ffn_hidden"], "col": "ffn_read"}
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))
    car.export_compact(tmp_path / "compact.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(apply_compact(base, tmp_path / "compact.safetensors")(input_ids=ids).logits,
                                   car.merge()(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def sftr(*args):
    return subprocess.run(["sftr", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_info_layout_prints_the_gate_groups(family):
    r = sftr("info", "--layout", f"tiny:{family}")
    assert r.returncode == 0, r.stderr
    lay = layout_of(tiny_model(family))
    assert f"{lay.arch} ({family}): 2 layers" in r.stdout
    for g, n in lay.group_sizes().items(): assert f"{g:<11} {n:>7,}" in r.stdout
    for m in lay.modules: assert m in r.stdout
    if family == "phi3":
        assert "qkv_proj" in r.stdout and "attn_q+attn_k+attn_v" in r.stdout and "ffn_hidden+ffn_hidden" in r.stdout


def test_info_layout_refuses_unknown_and_unsupported(tmp_path):
    r = sftr("info", "--layout", "tiny:gpt2")
    assert r.returncode == 2 and "choose one of" in r.stderr and "phi3" in r.stderr
    import transformers
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(tmp_path / "g")
    r = sftr("info", "--layout", str(tmp_path / "g"))
    assert r.returncode == 2 and "Unsupported architecture 'GPT2LMHeadModel'" in r.stderr
    assert "Gemma2ForCausalLM, Gemma3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Olmo2ForCausalLM, Phi3ForCausalLM" in r.stderr
