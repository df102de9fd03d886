"""LoRA library: scan rate and recommendation latency over a generated 10,000-file library.

A temporary folder gets --files real safetensors LoRAs (kohya and PEFT layouts for SD1.5, SDXL
and FLUX.1, rank 2, kohya ss_* / modelspec metadata with varied names and training tags), a
third of them with a CivitAI .civitai.info sidecar. Cases, each against a baseline measured in
the same run:

  * scan, cold index: kubik_core.loras.scan_library with an empty cache (headers + sidecars read)
    vs a naive scan that opens every file with safetensors.safe_open and reads its metadata and
    every tensor (what a loader-based scan costs);
  * scan, warm index: the same folders again with the cache written by the cold scan (stat only)
    vs the cold scan (goal >= 5,000 files/s);
  * recommend p50 / p99: kubik_core.loras.recommend over the whole library for --prompts prompts
    (BM25 + keywords + popularity, no CLIP encode; goal p50 <= 5 ms) vs a naive recommender that
    scores every LoRA by word overlap with no index.

    python benchmarks/loras_library.py [--files 10000] [--prompts 200]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubik_core.loras import LoraIndex, recommend, scan_library  # noqa: E402
from kubik_core.loras.synthetic import kohya_metadata, lora_tensors  # noqa: E402
from kubik_core.loras.text_index import tokens  # noqa: E402
from kubik_core.prompting import analyze_prompt  # noqa: E402

STYLES = ["anime", "watercolor", "oil painting", "pixel art", "film photo", "cinematic", "comic",
          "3d render", "sketch", "concept art", "lineart", "ukiyo-e", "cyberpunk", "art nouveau"]
SUBJECTS = ["castle", "cat", "dragon", "samurai", "robot", "forest", "city street", "portrait",
            "car", "spaceship", "flower", "wizard", "knight", "mountain", "ocean", "food", "armor",
            "dress", "hair", "eyes", "hands", "lighting", "detail", "background"]
TAGS = ["1girl", "1boy", "solo", "outdoors", "indoors", "smile", "night", "day", "rain", "snow",
        "sunset", "neon", "fog", "close-up", "full body", "landscape", "masterpiece", "sky"]
LAYOUTS = [("kohya", "sdxl"), ("kohya", "sd1"), ("peft", "sdxl"), ("peft", "sd1"), ("kohya", "flux")]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return "cpu " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu " + (platform.processor() or platform.machine())


def build_library(root: Path, files: int, seed: int = 0) -> None:
    from safetensors.torch import save

    rng = random.Random(seed)
    tensors = {layout: lora_tensors(*layout, rank=2) for layout in LAYOUTS}
    for i in range(files):
        layout = LAYOUTS[i % len(LAYOUTS)]
        style, subject = rng.choice(STYLES), rng.choice(SUBJECTS)
        name = f"{style}_{subject}_{i:05d}".replace(" ", "_")
        tags = {t: rng.randint(1, 60) for t in rng.sample(TAGS, 5) + [style, subject]}
        meta = kohya_metadata(layout[1], name, tags=tags, trigger=f"{subject} {i}" if i % 2 else "")
        folder = root / layout[1] / f"{i // 500:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.safetensors").write_bytes(save(tensors[layout], metadata=meta))
        if i % 3 == 0:
            (folder / f"{name}.civitai.info").write_text(json.dumps({
                "baseModel": {"sdxl": "SDXL 1.0", "sd1": "SD 1.5", "flux": "Flux.1 D"}[layout[1]],
                "trainedWords": [f"{subject} {style}"], "nsfwLevel": 1,
                "stats": {"downloadCount": rng.randint(0, 200000), "thumbsUpCount": rng.randint(0, 5000),
                          "thumbsDownCount": rng.randint(0, 100)},
                "model": {"name": name, "tags": [style, subject]}}))


def naive_scan(root: Path) -> int:
    from safetensors import safe_open

    count = 0
    for path in root.rglob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            handle.metadata()
            for key in handle.keys():
                handle.get_tensor(key)
        count += 1
    return count


def naive_recommend(entries, prompt: str, top: int = 3):
    words = set(tokens(prompt))
    scored = []
    for entry in entries:
        text = " ".join([entry.name, entry.title, " ".join(entry.triggers), " ".join(entry.tags)])
        overlap = len(words & set(tokens(text)))
        if overlap:
            scored.append((overlap, entry.name))
    scored.sort(reverse=True)
    return scored[:top]


def recommend_latencies(index: LoraIndex, prompts: int, seed: int = 1) -> tuple[list[float], list[float]]:
    """Milliseconds per call of ``recommend`` (SDXL, 3 LoRAs) and of the naive baseline, on the same
    ``prompts`` random prompts (seeded), after one warm-up call."""
    rng = random.Random(seed)
    texts = [f"{rng.choice(STYLES)} {rng.choice(SUBJECTS)}, {rng.choice(SUBJECTS)}, {rng.choice(TAGS)}, "
             f"highly detailed, {rng.choice(TAGS)}" for _ in range(prompts)]
    analyses = [analyze_prompt(t) for t in texts]
    recommend(index, analyses[0], family="sdxl")          # warm-up: styles memoised on first use
    ours, base = [], []
    for text, analysis in zip(texts, analyses):
        t0 = time.perf_counter()
        recommend(index, analysis, family="sdxl", max_loras=3)
        ours.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        naive_recommend(index.entries, text)
        base.append((time.perf_counter() - t0) * 1000)
    return ours, base


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--prompts", type=int, default=200)
    args = parser.parse_args()
    device = cpu_name()
    with tempfile.TemporaryDirectory(prefix="kubik-loras-bench-") as tmp:
        root, cache = Path(tmp) / "loras", Path(tmp) / "index.json"
        started = time.perf_counter()
        build_library(root, args.files)
        print(f"# built {args.files} LoRA files in {time.perf_counter() - started:.1f} s", flush=True)

        started = time.perf_counter()
        naive = naive_scan(root)
        naive_rate = naive / (time.perf_counter() - started)
        cold = scan_library([root], cache_path=cache)
        cold_rate = cold.stats.files / cold.stats.seconds
        warm = scan_library([root], cache_path=cache)
        warm_rate = warm.stats.files / warm.stats.seconds
        assert warm.stats.read == 0 and warm.stats.files == args.files
        print(f"scan cold index | {device} | {args.files} files | {cold_rate:,.0f} files/s | "
              f"baseline safe_open full read {naive_rate:,.0f} files/s | ratio {cold_rate / naive_rate:.1f}x")
        print(f"scan warm index | {device} | {args.files} files | {warm_rate:,.0f} files/s | "
              f"baseline cold index {cold_rate:,.0f} files/s | ratio {warm_rate / cold_rate:.1f}x | "
              f"goal >= 5,000 files/s {'met' if warm_rate >= 5000 else 'NOT met'}")

        started = time.perf_counter()
        index = LoraIndex(warm)
        print(f"# index build (BM25, popularity) {time.perf_counter() - started:.2f} s", flush=True)
        ours, base = recommend_latencies(index, args.prompts)
        p50, p99 = statistics.median(ours), percentile(ours, 99)
        b50, b99 = statistics.median(base), percentile(base, 99)
        print(f"recommend p50 | {device} | {args.files} LoRAs, {args.prompts} prompts, no CLIP | {p50:.2f} ms | "
              f"baseline naive overlap scan {b50:.2f} ms | ratio {b50 / p50:.1f}x faster | "
              f"goal <= 5 ms {'met' if p50 <= 5 else 'NOT met'}")
        print(f"recommend p99 | {device} | {args.files} LoRAs, {args.prompts} prompts, no CLIP | {p99:.2f} ms | "
              f"baseline naive overlap scan {b99:.2f} ms | ratio {b99 / p99:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
