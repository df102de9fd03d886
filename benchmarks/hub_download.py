"""Download throughput of kubik_core.hub vs a plain `requests` streaming download, same run.

A local HTTP server on 127.0.0.1 serves one random file (default 200 MB) from a temporary
folder. Cases (fastest of --repeat runs each, alternating which goes first, each started after
os.sync() so no case pays for the previous one's dirty pages):
  * plain requests: GET stream=True, iter_content(1 MiB), write to a file (no verification);
  * plain requests + fsync: the same, made durable as kubik's file is before its rename;
  * kubik: kubik_core.hub.download_file with the expected SHA-256: .part file, SHA-256 while
    writing, fsync, verification, atomic rename (goal: within 10% of plain requests);
  * the same two over a paced link (default 100 MB/s, a fast internet connection), where the
    network, not the client, sets the pace - as for real downloads;
  * resume after a drop: the server cuts the first connection at half the file; kubik resumes
    with Range and finishes (compared with kubik's clean download);
  * resume from a .part: half the file is already on disk from an earlier run (it is re-hashed,
    then only the rest is fetched).

    python benchmarks/hub_download.py [--mb 200] [--repeat 5] [--link-mbps 100] [--dir DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from kubik_core.hub.config import HubConfig  # noqa: E402
from kubik_core.hub.download import download_file  # noqa: E402
from kubik_core.hub.http import HubSession  # noqa: E402


class FileServer:
    """Serves one file with Range support (sendfile); can drop the next GET at a byte offset."""

    def __init__(self, path: Path):
        self.path = path
        self.size = path.stat().st_size
        self.drop_next_at: int | None = None
        self.rate: float | None = None   # bytes per second; None = as fast as loopback goes
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                start = 0
                wanted = self.headers.get("Range")
                self.send_response(206 if wanted else 200)
                if wanted:
                    start = int(wanted.split("=", 1)[1].split("-", 1)[0])
                    self.send_header("Content-Range", f"bytes {start}-{server.size - 1}/{server.size}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(server.size - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.flush()
                count = server.size - start
                drop, server.drop_next_at = server.drop_next_at, None
                if drop is not None:
                    count = drop - start
                with open(server.path, "rb") as handle:
                    if not server.rate:
                        self.connection.sendfile(handle, start, count)
                    else:  # paced in 1 MiB blocks, like a link of `rate` bytes per second
                        began, sent = time.perf_counter(), 0
                        while sent < count:
                            block = min(1 << 20, count - sent)
                            self.connection.sendfile(handle, start + sent, block)
                            sent += block
                            time.sleep(max(0.0, began + sent / server.rate - time.perf_counter()))
                if drop is not None:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.safetensors"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def plain_requests(url: str, target: Path, durable: bool = False) -> None:
    with requests.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        with open(target, "wb") as handle:
            for chunk in response.iter_content(1 << 20):
                handle.write(chunk)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())


def kubik(url: str, folder: Path, sha: str) -> None:
    config = HubConfig(cache_dir=None, backoff_base_s=0.05)
    session = HubSession(config)
    try:
        download_file(session, url, folder, "model.safetensors", expected_sha256=sha)
    finally:
        session.close()


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process - client and server threads) of one run."""
    os.sync()  # start every case with no dirty pages left by the previous one (untimed)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--link-mbps", type=float, default=100.0,
                        help="speed of the paced case, MB/s (default 100, a fast internet link)")
    parser.add_argument("--dir", help="folder for the files (default: the system temp folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kubik-hub-bench-", dir=args.dir) as tmp:
        tmp = Path(tmp)
        source = tmp / "served.bin"
        digest = hashlib.sha256()
        with open(source, "wb") as handle:
            for _ in range(args.mb):
                block = os.urandom(1 << 20)
                digest.update(block)
                handle.write(block)
        sha = digest.hexdigest()
        server = FileServer(source)
        size_mb = server.size / 2**20

        def fresh(name: str) -> Path:
            folder = tmp / name
            if folder.exists():
                for item in folder.iterdir():
                    item.unlink()
            folder.mkdir(exist_ok=True)
            return folder

        paced_plain, paced_ours = [], []
        server.rate = args.link_mbps * 2**20
        paced_cases = [(paced_plain, lambda folder: plain_requests(server.url, folder / "model.safetensors")),
                       (paced_ours, lambda folder: kubik(server.url, folder, sha))]
        for run in range(max(1, args.repeat // 2)):
            for times, case in (paced_cases if run % 2 == 0 else paced_cases[::-1]):
                folder = fresh("paced")
                times.append(timed(lambda: case(folder)))
        server.rate = None

        plain, plain_durable, ours, dropped, from_part = [], [], [], [], []
        for run in range(args.repeat):
            cases = [
                (plain, lambda folder: plain_requests(server.url, folder / "model.safetensors")),
                (plain_durable, lambda folder: plain_requests(server.url, folder / "model.safetensors",
                                                              durable=True)),
                (ours, lambda folder: kubik(server.url, folder, sha)),
            ]
            for index, (times, case) in enumerate(cases if run % 2 == 0 else cases[::-1]):
                folder = fresh(f"case{index}")
                times.append(timed(lambda: case(folder)))
            folder = fresh("dropped")
            server.drop_next_at = server.size // 2
            dropped.append(timed(lambda: kubik(server.url, folder, sha)))
            folder = fresh("part")
            with open(source, "rb") as src, open(folder / "model.safetensors.part", "wb") as dst:
                dst.write(src.read(server.size // 2))
            from_part.append(timed(lambda: kubik(server.url, folder, sha)))
        server.httpd.shutdown()

    # The fastest of the runs: the machine may be shared, and noise only ever adds time.
    (p, p_cpu), (pd, pd_cpu), (k, k_cpu), (d, _), (r, _) = (
        min(x) for x in (plain, plain_durable, ours, dropped, from_part))
    device = f"cpu x{os.cpu_count()} (127.0.0.1 HTTP, files in {args.dir or tempfile.gettempdir()})"
    print(f"hub download {size_mb:.0f} MB, {device}: kubik verified {k:.2f} s ({size_mb / k:.0f} MB/s, "
          f"{k_cpu:.2f} CPU s) vs plain requests stream {p:.2f} s ({size_mb / p:.0f} MB/s, "
          f"{p_cpu:.2f} CPU s); ratio {k / p:.2f} (goal <= 1.10)")
    print(f"hub download {size_mb:.0f} MB, {device}: kubik verified {k:.2f} s vs plain requests stream "
          f"+ fsync (same durability, no hash) {pd:.2f} s ({size_mb / pd:.0f} MB/s, {pd_cpu:.2f} CPU s); "
          f"ratio {k / pd:.2f}")
    (pp, _), (pk, _) = min(paced_plain), min(paced_ours)
    print(f"hub download {size_mb:.0f} MB over a {args.link_mbps} MB/s link, {device}: kubik verified "
          f"{pk:.2f} s vs plain requests stream {pp:.2f} s; ratio {pk / pp:.2f} (goal <= 1.10)")
    print(f"hub resume after a drop at 50%, {device}: {d:.2f} s vs clean kubik download {k:.2f} s; "
          f"ratio {d / k:.2f}")
    print(f"hub resume from a 50% .part file, {device}: {r:.2f} s vs clean kubik download {k:.2f} s; "
          f"ratio {r / k:.2f}")


if __name__ == "__main__":
    main()
