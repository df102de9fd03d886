"""Classifier throughput: KubikAI's inference/training path vs plain timm eager, same run.

Model: --arch (default vit_base_patch16_384, the plant-species model's architecture), random
weights (throughput does not depend on them), random inputs.

  * GPU (when CUDA is present): inference, ours = kubik_core's ``Classifier.logits`` with bf16
    weights + channels_last + torch.compile, vs timm eager with bf16 autocast (timm
    benchmark.py --amp); goal >= 1.3x. Training, ours = the step `kubik classify train --amp bf16
    --channels-last --compile` runs vs the timm eager AMP step.
  * CPU: ours = ``Classifier.logits`` in fp32 (CPU bf16 only pays on AMX parts) under
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


def bench_inference(arch, device, batch, size, warmup, iters):
    """Ours: kubik_core's Classifier.logits (on a GPU: bf16 weights, channels_last, compiled)."""
    import timm

    from kubik_core.classify.model import ModelCard
    from kubik_core.classify.predict import Classifier

    torch.manual_seed(0)
    gpu = device.type == "cuda"
    baseline = timm.create_model(arch, pretrained=False).to(device).eval()
    model = build_model(arch, baseline.num_classes).to(device).eval()
    model.load_state_dict(baseline.state_dict())
    card = ModelCard(architecture=arch, classes=[str(i) for i in range(baseline.num_classes)],
                     input_size=[3, size, size], mean=[0.5] * 3, std=[0.5] * 3)
    ours = Classifier(model.to(torch.bfloat16) if gpu else model, card, device,
                      channels_last=gpu, compile=gpu)
    x = torch.randn(batch, 3, size, size, device=device)

    def run_base():
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=gpu):
            baseline(x)

    return _paired_rates(lambda: ours.logits(x), run_base, batch, device, warmup, iters)


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
    from timm.optim import create_optimizer_v2

    opt_ours = create_optimizer_v2(ours, opt="adamw", lr=1e-4)  # as kubik_core.classify.train does

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
    what = "bf16 autocast+channels_last+compile vs timm eager AMP" if gpu else "same eager step (fp32)"
    print(f"classify training {args.arch}@{size} bs={train_batch} [{what}] on {name}: ours {ours:.3g} img/s, "
          f"baseline {base:.3g} img/s, ratio {ours / base:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
