"""`kubik queue`'s engine (kubik_core.comfy_client.run_jobs) on 1 vs 2 real ComfyUI servers, and
its overhead per job against a plain websocket loop, all in one run.

Two ComfyUI 0.8.0 servers (COMFYUI_DIR) start on this machine with the tiny random-weight SD1.5
checkpoint of the tests; each job samples 64x64 in --steps steps with its own seed (so nothing
comes from ComfyUI's cache) and saves a PNG that is downloaded. Each server's torch uses
--threads threads (OMP_NUM_THREADS), so that two servers can use the machine's cores side by side
instead of fighting over them. Cases, after one warm-up job per server (checkpoint loading):

  * plain loop, 1 server: what ComfyUI's script_examples/websockets_api_example.py does, over
    aiohttp: POST /prompt, read the websocket until ``executing`` with node None, GET
    /history/ID, GET /view for each image; one job at a time;
  * run_jobs, 1 server, --max-in-flight 1: the same work through our client (overhead per job =
    its time minus the plain loop's, divided by N);
  * run_jobs, 1 server, --max-in-flight 2 (the default: the next prompt waits on the server
    while one runs and the last one downloads);
  * run_jobs, 2 servers: throughput against the 1-server run (default settings); goal (issue 19)
    >= 0.9 x 2 where the machine itself is not the limit.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/queue_throughput.py [--jobs 16] [--steps 30] [--threads 1]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from kubik_core.comfy_client import PoolSettings, expand_jobs, run_jobs  # noqa: E402
from kubik_testing.comfy_server import ComfyServer  # noqa: E402
from kubik_testing.tiny_checkpoint import build_tiny_sd15_checkpoint  # noqa: E402

WORKFLOW = REPO / "tests" / "comfy_client" / "tiny_txt2img.json"


async def plain_loop(url: str, prompts: list[dict]) -> None:
    """ComfyUI's websocket example, one prompt after another."""
    import aiohttp

    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws{url[4:]}/ws?clientId={client_id}") as ws:
            for prompt in prompts:
                prompt_id = uuid.uuid4().hex
                async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": client_id,
                                                                "prompt_id": prompt_id}) as resp:
                    resp.raise_for_status()
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        message = json.loads(msg.data)
                        if message["type"] == "executing" and message["data"]["node"] is None \
                                and message["data"]["prompt_id"] == prompt_id:
                            break
                async with session.get(f"{url}/history/{prompt_id}") as resp:
                    history = (await resp.json())[prompt_id]
                for output in history["outputs"].values():
                    for image in output.get("images", []):
                        query = urlencode({"filename": image["filename"], "subfolder": image["subfolder"],
                                           "type": image["type"]})
                        async with session.get(f"{url}/view?{query}") as resp:
                            await resp.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16, help="jobs per case (default 16)")
    parser.add_argument("--steps", type=int, default=30,
                        help="sampling steps per job (default 30: about a second of sampling on one core)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per server (default 1)")
    args = parser.parse_args()
    comfyui = os.environ.get("COMFYUI_DIR")
    if not comfyui or not (Path(comfyui) / "main.py").exists():
        print("queue_throughput: skipped (set COMFYUI_DIR to a ComfyUI checkout)")
        return 0
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    work = Path(tempfile.mkdtemp(prefix="kubik-queue-bench-"))
    checkpoint = build_tiny_sd15_checkpoint(work / "tiny.safetensors", Path(comfyui))
    servers = []
    for name in ("a", "b"):
        server = ComfyServer(Path(comfyui), REPO, work / name)
        (server.models_dir / "checkpoints").mkdir(parents=True)
        os.link(checkpoint, server.models_dir / "checkpoints" / "tiny.safetensors")
        servers.append(server)
    threads = [threading.Thread(target=s.start) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        a, b = servers
        api = json.loads(WORKFLOW.read_text())
        api["5"]["inputs"]["steps"] = args.steps
        info = a.get("/object_info")
        seeds = iter(range(1000, 10 ** 6))

        def batch(n: int):
            return expand_jobs(api, info, sweeps=["5.seed=" + ",".join(str(next(seeds)) for _ in range(n))])

        run_jobs(batch(2), [a.url, b.url], work / "warm-up")          # load the checkpoint on both
        n = args.jobs
        times = {}
        started = time.perf_counter()
        asyncio.run(plain_loop(a.url, [job.prompt for job in batch(n)]))
        times["plain"] = time.perf_counter() - started
        for case, urls, in_flight in (("ours1", [a.url], 1), ("ours1x2", [a.url], 2), ("ours2", [a.url, b.url], 2)):
            jobs = batch(n)
            started = time.perf_counter()
            report = run_jobs(jobs, urls, work / case, settings=PoolSettings(max_in_flight=in_flight))
            times[case] = time.perf_counter() - started
            assert report.count("done") == n, [r.error for r in report.results if r.error]
        load = os.getloadavg()[0]
        device = f"CPU ({os.cpu_count()} cores, load {load:.1f}), {args.threads} torch thread(s) per server"
        print(f"plain websocket loop, 1 server: {n} jobs in {times['plain']:.2f} s, "
              f"{times['plain'] / n * 1000:.0f} ms/job [{device}]")
        print(f"run_jobs, 1 server, 1 in flight: {times['ours1']:.2f} s; overhead vs plain loop "
              f"{(times['ours1'] - times['plain']) / n * 1000:+.0f} ms/job ({times['ours1'] / times['plain']:.2f}x)")
        print(f"run_jobs, 1 server, 2 in flight: {times['ours1x2']:.2f} s "
              f"({times['plain'] / times['ours1x2']:.2f}x the plain loop's throughput)")
        print(f"run_jobs, 2 servers: {times['ours2']:.2f} s; throughput {n / times['ours2']:.2f} jobs/s vs "
              f"{n / times['ours1x2']:.2f} on 1 server: {times['ours1x2'] / times['ours2']:.2f}x (ideal 2x)")
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
