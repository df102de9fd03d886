"""Wall time and peak memory of `kubik params` / `kubik explain`, each run in a fresh process.

Issue 23: both commands took 2.7-3 s and 880 MB, because `--device auto` imported torch just to
learn that there is no GPU. Each line: the command, this machine, the median wall time and the
peak resident memory (the process's own ru_maxrss, from os.wait4) over --repeat runs, for this
working tree and, side by side in the same run, for the code of --baseline-rev (a git revision,
exported to a temporary folder with `git archive`; nothing in the working tree changes), with
the ratio now / baseline. Python's own start (`python -c pass`) is measured too, as the floor.

    python benchmarks/cli_startup.py [--repeat 7] [--baseline-rev b79fd9e]

Each side gets a cache folder of its own (KUBIK_CACHE_DIR), in which its CPU profile is measured
once before timing (the two versions key the profile differently), so that every timed run
reads a cached profile rather than measuring the CPU.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "cinematic close-up portrait of an old fisherman, soft window light, 85mm photo"
CASES = (
    ("kubik params (--device auto)", ["params", PROMPT, "--family", "sdxl"]),
    ("kubik explain (--device auto)", ["explain", PROMPT, "--family", "flux_dev", "--verbosity", "detailed"]),
    ("kubik params --device rtx4090", ["params", PROMPT, "--family", "sdxl", "--device", "rtx4090"]),
)


def run_once(argv: list[str], pythonpath: Path, cache: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process running ``argv``."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "KUBIK_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *argv], cwd=pythonpath, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    error = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed: {error.strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024.0     # Linux reports kilobytes


def measure(argv: list[str], pythonpath: Path, cache: Path, repeat: int) -> tuple[float, float]:
    runs = [run_once(argv, pythonpath, cache) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def calibrate(pythonpath: Path, cache: Path) -> None:
    """Measure the CPU once into ``cache``: with --calibrate where the code has it, else the
    way older code did (any run on the CPU device measured)."""
    command = ["-m", "kubik_core.cli", "params", "x", "--device", "cpu"]
    try:
        run_once([*command, "--calibrate"], pythonpath, cache)
    except SystemExit:
        run_once(command, pythonpath, cache)


def export_revision(revision: str, folder: Path) -> Path:
    """kubik_core of ``revision`` under ``folder`` (git archive: the working tree is untouched)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "baseline.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), revision,
                    "kubik_core"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load {load:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline-rev", default=None,
                        help="git revision to compare with (default: none, this tree only)")
    args = parser.parse_args()
    print(f"# {machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, median of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        floor = measure(["-c", "pass"], REPO, tmp, args.repeat)
        print(f"python -c pass: {floor[0]:.2f} s, {floor[1]:.0f} MB")
        calibrate(REPO, tmp / "cache-now")
        baseline_root = None
        if args.baseline_rev:
            baseline_root = export_revision(args.baseline_rev, tmp / "baseline")
            calibrate(baseline_root, tmp / "cache-baseline")
        for label, command in CASES:
            argv = ["-m", "kubik_core.cli", *command]
            wall, rss = measure(argv, REPO, tmp / "cache-now", args.repeat)
            line = f"{label}: {wall:.2f} s, {rss:.0f} MB"
            if baseline_root is not None:
                base_wall, base_rss = measure(argv, baseline_root, tmp / "cache-baseline", args.repeat)
                line += (f" | {args.baseline_rev}: {base_wall:.2f} s, {base_rss:.0f} MB"
                         f" | ratio {wall / base_wall:.2f} time, {rss / base_rss:.2f} memory")
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
