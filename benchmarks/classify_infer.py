"""Classifier throughput: KubikAI's inference/training path vs plain timm eager, same run.

Model: --arch (default vit_base_patch16_384, the plant-species model's architecture), random
weights (throughput does not depend on them), random inputs.

  * GPU (when CUDA is present): ours = bf16 weights + channels_last + torch.compile (what
    `Classifier` and `kubik classify train --amp bf16 --channels-last --compile` run) vs timm
    eager with bf16 autocast (timm benchmark.py --amp). Goal: >= 1.3x for inference.
  * CPU: ours = the same code path with no autocast (CPU bf16 is only faster on AMX parts) plus
    inference_mode vs timm eager under no_grad; a small batch, few iterations.

Each case prints: what, device, our img/s, baseline img/s, ratio. Timings are medians of
--iters timed iterations after --warmup untimed ones (compile happens during warm-up), ours
and the baseline alternating so that load from other processes affects both alike.

    python benchmarks/classify_infer.py [--arch vit_base_patch16_384] [--batch N] [--iters 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from kubik_core.classify.model import build_model  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _paired_rates(ours, base, batch, device, warmup, iters) -> tuple[float, float]:
    """img/s of two step functions, timed alternately so load drift hits both alike (medians)."""
    for _ in range(warmup):
        base()
        ours()
    times = {"ours": [], "base": []}
    for i in range(iters):
        pair = (("base", base), ("ours", ours)) if i % 2 == 0 else (("ours", ours), ("base", base))
        for name, step in pair:
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return batch / statistics.median(times["ours"]), batch / statistics.median(times["base"])


def _models(arch: str, device: torch.device, ours_compiled: bool):
    """(ours, baseline): the same architecture and weights, prepared two ways."""
    import timm

    torch.manual_seed(0)
    baseline = timm.create_model(arch, pretrained=False).to(device)
    ours = build_model(arch, baseline.num_classes).to(device)
    ours.load_state_dict(baseline.state_dict())
    if device.type == "cuda":
        ours = ours.to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    if ours_compiled:
        ours = torch.compile(ours)
    return ours, baseline


def bench_inference(arch, device, batch, size, warmup, iters):
    ours, baseline = _models(arch, device, ours_compiled=device.type == "cuda")
    ours.eval()
    baseline.eval()
    x = torch.randn(batch, 3, size, size, device=device)
    x_ours = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x

    def run_ours():
        with torch.inference_mode():
            ours(x_ours)

    def run_base():
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            baseline(x)

    return _paired_rates(run_ours, run_base, batch, device, warmup, iters)


def bench_training(arch, device, batch, size, warmup, iters):
    import timm

    torch.manual_seed(0)
    gpu = device.type == "cuda"
    baseline = timm.create_model(arch, pretrained=False).to(device).train()
    ours = build_model(arch, baseline.num_classes).to(device).train()
    ours.load_state_dict(baseline.state_dict())
    if gpu:
        ours = ours.to(memory_format=torch.channels_last)
    ours_step_model = torch.compile(ours) if gpu else ours
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, baseline.num_classes, (batch,), device=device)
    x_ours = x.contiguous(memory_format=torch.channels_last) if gpu else x
    opt_base = torch.optim.AdamW(baseline.parameters(), lr=1e-4)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=gpu)

    def step(model, opt, inputs):
        def run():
            with torch.autocast(device.type, torch.bfloat16, enabled=gpu):
                loss = torch.nn.functional.cross_entropy(model(inputs), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    return _paired_rates(step(ours_step_model, opt_ours, x_ours), step(baseline, opt_base, x),
                         batch, device, warmup, iters)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_base_patch16_384")
    parser.add_argument("--size", type=int, default=None, help="input size (default: the arch's)")
    parser.add_argument("--batch", type=int, default=None, help="default 64 on GPU, 2 on CPU")
    parser.add_argument("--train-batch", type=int, default=None, help="default 32 on GPU, 2 on CPU")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None)
    args = parser.parse_args()

    import timm

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    size = args.size or timm.create_model(args.arch, pretrained=False).pretrained_cfg["input_size"][-1]
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    iters = args.iters or (20 if gpu else 5)
    name = torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    batch = args.batch or (64 if gpu else 2)
    ours, base = bench_inference(args.arch, device, batch, size, warmup, iters)
    what = "bf16+channels_last+compile vs timm eager AMP" if gpu else "inference_mode vs timm eager no_grad"
    print(f"classify inference {args.arch}@{size} bs={batch} [{what}] on {name}: ours {ours:.3g} img/s, "
          f"baseline {base:.3g} img/s, ratio {ours / base:.2f}x", flush=True)
    train_batch = args.train_batch or (32 if gpu else 2)
    ours, base = bench_training(args.arch, device, train_batch, size, warmup, iters)
    what = "bf16 autocast+channels_last+compile+fused AdamW vs timm eager AMP" if gpu else "same eager step (fp32)"
    print(f"classify training {args.arch}@{size} bs={train_batch} [{what}] on {name}: ours {ours:.3g} img/s, "
          f"baseline {base:.3g} img/s, ratio {ours / base:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
