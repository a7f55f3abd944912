"""Benchmark: writing a training checkpoint with `save_tensors` (streamed) against building the file in memory first.

A stage checkpoints its training state with `sft_reverse_nb.artefacts.save_tensors`. For LCDD that state is the SFT
delta of every projection and its two Adam moments: 1.27 GB for SmolLM2-135M-Instruct. The package once serialised
the whole file into one byte string (`safetensors.torch.save`), copied it to sort the metadata keys in the header,
and wrote the copy; it now streams the tensors to the file with `safetensors.torch.save_file` and sorts the header in
place. This script builds random tensors with the shapes of that state (the projection weights of --model, three
times), writes them both ways in one process, alternating, --repeats times each (after `os.sync()`, so one write's
writeback does not land in the next one's time), checks that both files have the same bytes, and prints the
medians and their ratio.

    python bench/checkpoint_write.py [--model smollm2] [--repeats 3] [--dir /tmp]
"""
import argparse, hashlib, json, os, statistics, tempfile, time
from pathlib import Path
import sft_reverse_nb                      # noqa: F401  (the package's thread settings before torch loads)
import torch
from safetensors.torch import save
from sft_reverse_nb.arch import load_model, layout_of
from sft_reverse_nb.artefacts import atomic_path, save_tensors


def save_in_memory(tensors, path, metadata=None):
    "The earlier path: the whole file as one byte string, copied once more to sort the header's metadata keys."
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    n = int.from_bytes(data[:8], "little"); head = json.loads(data[8:8 + n])
    head["__metadata__"] = dict(sorted(head["__metadata__"].items()))
    new = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()
    with atomic_path(path) as tmp: tmp.write_bytes(data[:8] + new.ljust(n, b" ") + data[8 + n:])


def state_like(model_name: str) -> dict[str, torch.Tensor]:
    "Random tensors shaped like an LCDD training state: each projection's delta and two Adam moments."
    lay = layout_of(load_model(model_name))
    g = torch.Generator().manual_seed(0)
    out = {}
    for i in range(lay.n_layers):
        for n in lay.modules:
            shape = lay.projection(i, n).weight.shape
            for part in ("delta", "adam.exp_avg", "adam.exp_avg_sq"):
                out[f"layers.{i}.{n}.{part}"] = torch.randn(shape, generator=g)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2"); ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    a = ap.parse_args(argv)
    tensors = state_like(a.model)
    gb = sum(t.numel() * t.element_size() for t in tensors.values()) / 1e9
    d = Path(a.dir or tempfile.mkdtemp(prefix="ckpt_bench_")); d.mkdir(parents=True, exist_ok=True)
    meta = {"step": "40", "stage": "lcdd", "format": "bench"}
    ways = {"in memory, then copied": lambda p: save_in_memory(tensors, p, meta), "streamed (save_tensors)": lambda p: save_tensors(tensors, p, meta)}
    times = {k: [] for k in ways}
    for _ in range(a.repeats):
        for k, f in ways.items():
            os.sync(); t = time.perf_counter(); f(d/f"{len(times[k])}-{k[:8]}.safetensors"); times[k].append(time.perf_counter() - t)
    digests = {hashlib.sha256((d/f"0-{k[:8]}.safetensors").read_bytes()).hexdigest() for k in ways}
    for f in d.glob("*.safetensors"): f.unlink()
    print(f"{a.model}: an LCDD training state of {gb:.2f} GB ({len(tensors)} tensors), {a.repeats} writes each, alternating")
    for k, ts in times.items(): print(f"  {k:26s} median {statistics.median(ts):6.2f} s   runs {', '.join(f'{t:.2f}' for t in ts)}")
    m = [statistics.median(ts) for ts in times.values()]
    print(f"  streamed / in memory: {m[1] / m[0]:.3f}   same bytes: {len(digests) == 1}")


if __name__ == "__main__":
    main()
