"""The public Carrier API that later stages and users' scripts rely on (names fixed by the design)."""
import copy

import pytest
import torch

from sft_reverse_nb.arch import tiny_model
from sft_reverse_nb.carrier import Carrier, perturbed_copy, apply_compact
from sft_reverse_nb.equivalence import GATE_GROUPS


@pytest.fixture(params=["llama", "mistral", "qwen2", "qwen3"])
def pair(request):
    base = tiny_model(request.param)
    return base, perturbed_copy(base, seed=5)


def _logits(m, ids):
    with torch.no_grad():
        return m(input_ids=ids).logits


def test_roundtrips(pair, tmp_path):
    base, sft = pair
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(1))
    car = Carrier.attach(copy.deepcopy(sft), base)
    assert set(car.logits) == {f"layers.{i}.{g}" for i in range(2) for g in GATE_GROUPS}
    with torch.no_grad():
        for k, p in car.logits.items():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(k))))
    assert 0.2 < car.sparsity() < 0.8
    st = car.stats()
    assert sum(v["active"] for s in st.values() for v in s.values()) == round((1 - car.sparsity()) * car.layout.n_gates)
    ref = _logits(car.model, ids)
    car.save(tmp_path / "c")
    assert torch.equal(_logits(Carrier.load(tmp_path / "c", copy.deepcopy(sft), base).model, ids), ref)
    merged = car.merge()
    torch.testing.assert_close(_logits(merged, ids), ref, rtol=0, atol=1e-6)
    car.export_compact(tmp_path / "compact.safetensors")
    assert torch.equal(_logits(apply_compact(base, tmp_path / "compact.safetensors"), ids), _logits(merged, ids))


def test_write_channels_follow_write_gates(pair):
    base, sft = pair
    car = Carrier.attach(copy.deepcopy(sft), base).fill(-1.0)
    assert car.write_channels() == {} and car.sparsity() == 1.0
    with torch.no_grad():
        car.logits["layers.1.attn_write"][7] = 2.0
        car.logits["layers.1.ffn_write"][[1, 7]] = 2.0
        car.logits["layers.0.attn_q"][:] = 2.0           # not a write gate
    assert car.write_channels() == {1: [1, 7]}


def test_gated_step_trains_gates_and_deltas(pair):
    base, sft = pair
    car = Carrier.attach(copy.deepcopy(sft), base)
    car.model.train()
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.SGD(car.gate_parameters(), lr=10.0)
    before = {k: p.detach().clone() for k, p in car.logits.items()}
    loss = car.model(input_ids=ids, labels=ids).loss + 1.0 * car.penalty()
    loss.backward()
    opt.step()
    moved = [k for k, p in car.logits.items() if not torch.equal(p.detach(), before[k])]
    assert len(moved) == len(before)                     # every group got a gradient through the STE
    assert all(d.grad is not None for d in car.delta_parameters())
