"""LoRA recommendation quality on the evaluation set, and latency on a 10,000-LoRA library.

The evaluation set (tests/kubik_testing/lora_eval): 69 real LoRA files with the sidecars users
keep, and 63 prompts with the picks a knowledgeable user would make, written before the
recommender was run. Each prompt goes through kubik_core.prompting.analyze_prompt and
kubik_core.loras.recommend (max 3 LoRAs, the case's model family, defaults otherwise), as the
Kubik LoRA Recommender node runs it. Printed, one line each (goals of issue 23):

  * precision@3 (goal >= 0.85), recall@3 (goal >= 0.9), share of acceptable picks, top pick right;
  * unrequested character picks, cross-variant picks, clashing style stacks (goal 0 each);
  * trigger words that are not triggers: words the picks would append to the prompt that no
    trigger field of the LoRA holds (CivitAI trainedWords, ModelSpec trigger_phrase, A1111
    activation text, kohya class tokens);
  * recommend p50 over benchmarks/loras_library.py's 10,000 generated LoRAs (goal <= 5 ms),
    against a naive word-overlap scan measured in the same run.

    python benchmarks/loras_quality.py [--latency-files 10000] [--prompts 200] [--show-failures]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from kubik_core.loras import LoraIndex, recommend, scan_library  # noqa: E402
from kubik_core.prompting import analyze_prompt  # noqa: E402
from kubik_testing.lora_eval import CASES, LIBRARY, build_library, score_cases  # noqa: E402
from kubik_testing.lora_eval.metrics import false_triggers  # noqa: E402
from loras_library import cpu_name  # noqa: E402


def run_cases(index: LoraIndex):
    picks, wrong = {}, []
    for case in CASES:
        rec = recommend(index, analyze_prompt(case.prompt), family=case.family, max_loras=3)
        picks[case] = [c.name for c in rec.picks]
        for c in rec.picks:
            wrong += [(c.name, word) for word in false_triggers(c.name, c.triggers)]
    return score_cases(picks), wrong


def latency(files: int, prompts: int, device: str) -> None:
    from loras_library import build_library as build_generated
    from loras_library import recommend_latencies

    with tempfile.TemporaryDirectory(prefix="kubik-loras-quality-") as tmp:
        started = time.perf_counter()
        build_generated(Path(tmp), files)
        print(f"# built {files} generated LoRA files in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        index = LoraIndex(scan_library([tmp]))
        print(f"# scan and index {time.perf_counter() - started:.1f} s", flush=True)
    ours, base = recommend_latencies(index, prompts)
    p50, b50 = statistics.median(ours), statistics.median(base)
    print(f"recommend p50 | {device} | {files} LoRAs, {prompts} prompts, no CLIP | {p50:.2f} ms | "
          f"baseline naive overlap scan {b50:.2f} ms | ratio {b50 / p50:.1f}x faster | "
          f"goal <= 5 ms {'met' if p50 <= 5 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-files", type=int, default=10_000, help="0 skips the latency case")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--show-failures", action="store_true", help="print each case that is not perfect")
    args = parser.parse_args()
    device = cpu_name()
    with tempfile.TemporaryDirectory(prefix="kubik-lora-eval-") as tmp:
        index = LoraIndex(scan_library([build_library(Path(tmp))]))
        scores, not_triggers = run_cases(index)
    n = f"{len(LIBRARY)} LoRAs, {len(CASES)} prompts"
    goal = lambda ok: "met" if ok else "NOT met"
    print(f"precision@3 | {device} | {n} | {scores.precision_at_3:.3f} | goal >= 0.85 "
          f"{goal(scores.precision_at_3 >= 0.85)}")
    print(f"recall@3 | {device} | {n} | {scores.recall_at_3:.3f} | goal >= 0.9 {goal(scores.recall_at_3 >= 0.9)}")
    print(f"acceptable picks | {device} | {n} | {scores.picks - sum(len(c.unacceptable) for c in scores.cases)}"
          f" of {scores.picks} ({scores.acceptable_share:.0%}) | top pick right in {scores.top_pick_right} "
          f"of {len(CASES)}")
    print(f"unrequested character picks | {device} | {n} | {scores.unrequested_characters} | goal 0 "
          f"{goal(scores.unrequested_characters == 0)}")
    print(f"cross-variant picks | {device} | {n} | {scores.cross_variant} | goal 0 {goal(scores.cross_variant == 0)}")
    print(f"clashing style stacks | {device} | {n} | {scores.clashing_stacks} | goal 0 "
          f"{goal(scores.clashing_stacks == 0)}")
    print(f"trigger words that are not triggers | {device} | {n} | {len(not_triggers)} | goal 0 "
          f"{goal(not not_triggers)}")
    if args.show_failures:
        for c in scores.failures():
            print(f"  [{c.case.family}] {c.case.prompt}\n    picks {c.picks}\n    not acceptable "
                  f"{c.unacceptable} missed {c.missed}")
        for name, word in not_triggers:
            print(f"  trigger {word!r} of {name} is not a trigger")
    if args.latency_files:
        latency(args.latency_files, args.prompts, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
