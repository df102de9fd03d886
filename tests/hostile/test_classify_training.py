"""Training on hostile data: lost images, failing URLs, earlier runs, images that never load.

Every case trains a real (tiny) timm model on real images (scikit-learn's digits written as PNG)
or real broken files, and URL cases run against a real HTTP server on 127.0.0.1 that counts
requests. At 16 px a ResNet's last BatchNorm sees 1x1 maps, so a batch shrunk to one image
cannot train: the cases that lose images would crash there.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kubik_core.classify.classmap import ClassMap
from kubik_core.classify.fetch import FailureLog, FetchConfig, FetchError, Fetcher
from kubik_core.classify.manifest import Sample, read_dataset, write_jsonl
from kubik_core.cli import main

TINY_ARGS = ["--arch", "resnet18", "--model-kwargs", '{"channels": [8, 8, 8, 8], "stem_width": 8}',
             "--img-size", "16", "--batch-size", "4", "--workers", "0", "--randaugment", "none",
             "--device", "cpu", "--lr", "3e-3"]


def _digits(folder: Path, per_class: int, classes=(0, 1, 2)) -> list[Sample]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    samples = []
    for c in classes:
        for i in np.flatnonzero(digits.target == c)[:per_class]:
            path = folder / str(c) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), "L").save(path)
            samples.append(Sample(str(path), str(c)))
    return samples


def _split(folder: Path, train: list[Sample], val: list[Sample], classes=("0", "1", "2")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "val.jsonl", val)
    ClassMap(tuple(classes)).save(folder / "classes.json")
    return folder


def _train(data: Path, out: Path, *extra: str) -> tuple[int, dict | str]:
    """Run `kubik classify train`; (exit status, JSON summary or the error line)."""
    import contextlib

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["classify", "train", "--data", str(data), "--out", str(out), *TINY_ARGS, *extra])
    if code:
        return code, stderr.getvalue()
    text = stdout.getvalue()
    return code, json.loads(text) if "--json" in extra else text


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    return _digits(folder, 12), folder


def _zero_byte_files(folder: Path, count: int, label: str = "1") -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(count):
        (folder / f"broken{i}.png").write_bytes(b"")
        samples.append(Sample(str(folder / f"broken{i}.png"), label))
    return samples


@pytest.mark.timeout(300)
def test_batches_that_lose_images_are_refilled(images, tmp_path):
    """20 of 29 training images are empty files: nearly every batch of 4 loses images. Stand-ins
    keep them full, so BatchNorm trains; each broken file is logged once over both epochs."""
    samples, _ = images
    good = [s for c in "012" for s in [s for s in samples if s.label == c][:5]]
    train = good[0:3] + good[5:8] + good[10:13] + _zero_byte_files(tmp_path / "broken", 20)
    val = good[3:5] + good[8:10] + good[13:15]
    data = _split(tmp_path / "split", train, val)
    code, summary = _train(data, tmp_path / "run", "--epochs", "2", "--json")
    assert code == 0, summary
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in history] == [7, 14]  # 29 // 4 full batches per epoch
    assert all(np.isfinite(h["train_loss"]) for h in history)
    logged = FailureLog(tmp_path / "run" / "skipped.jsonl").read()
    assert sorted(Path(row["source"]).name for row in logged) == sorted(f"broken{i}.png" for i in range(20))
    assert summary["classes_without_train"] == []


def test_refill_is_the_same_for_any_number_of_processes(images, tmp_path):
    """A stand-in depends on (seed, epoch, slot) only, as the torchrun equivalence needs."""
    from kubik_core.classify.data import ManifestDataset

    samples, _ = images
    broken = _zero_byte_files(tmp_path, 3)
    rows = samples[:6] + broken
    first = ManifestDataset(rows, ClassMap(("0", "1", "2")), lambda im: torch.tensor(np.asarray(im)).float().mean(),
                            seed=3, refill=True)
    second = ManifestDataset(rows, ClassMap(("0", "1", "2")), first.transform, seed=3, refill=True)
    order = [8, 2, 6, 7, 0]
    a = [first[i] for i in order]
    b = [second[i] for i in reversed(order)][::-1]
    assert [(float(x[0]), x[1], x[2]) for x in a] == [(float(x[0]), x[1], x[2]) for x in b]
    assert {a[0][2], a[2][2], a[3][2]} <= set(range(6))  # slots of broken files got good images


def test_a_validation_set_without_one_loadable_image_is_named_before_training(images, tmp_path):
    samples, _ = images
    data = _split(tmp_path / "split", samples[:12], _zero_byte_files(tmp_path / "bad", 3, "0"))
    code, error = _train(data, tmp_path / "run", "--epochs", "1")
    assert code == 2
    assert error == (f"kubik classify: error: val.jsonl: none of its 3 images could be loaded (e.g. "
                     f"{tmp_path / 'bad' / 'broken0.png'}: empty file (0 bytes)); fix the files (see "
                     f"{tmp_path / 'run' / 'skipped.jsonl'}) or split again\n")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_class_left_without_a_usable_training_image_is_reported(images, tmp_path):
    samples, _ = images
    train = [s for s in samples if s.label != "2"][:16] + _zero_byte_files(tmp_path / "bad", 1, "2")
    data = _split(tmp_path / "split", train, [s for s in samples if s.label == "2"][:4])
    code, text = _train(data, tmp_path / "run", "--epochs", "1")
    assert code == 0
    assert text.splitlines()[-1] == ("note: 1 class(es) had no usable training image, so the model "
                                     "cannot predict them: '2' (see skipped.jsonl in the run folder)")


def test_split_summary_names_classes_without_training_images(images, tmp_path, capsys):
    samples, root = images
    rows = [{"path": s.path, "label": s.label} for s in samples if s.label != "2"]
    rows += [{"path": s.path, "label": "rare", "group": f"g{i}"} for i, s in
             enumerate(s for s in samples if s.label == "2")][:4]  # 4 groups: 2 val + 2 test
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["classify", "split", str(manifest), "--out", str(tmp_path / "split"),
                 "--val", "0.45", "--test", "0.45"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("; 1 class(es) have no training image, so a model trained on this split "
                          "cannot predict them: 'rare'")


def test_an_earlier_run_is_never_replaced_without_asking(images, tmp_path):
    samples, _ = images
    data = _split(tmp_path / "split", samples[:24], samples[24:30])
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1")[0] == 0
    (run / "notes.txt").write_text("mine")
    model = (run / "model.safetensors").read_bytes()
    code, error = _train(data, run, "--epochs", "1")
    assert (code, error) == (2, f"kubik classify: error: --out {run}: holds an earlier run; add "
                                "--resume to continue it, --overwrite to replace it, or choose "
                                "another folder\n")
    assert (run / "model.safetensors").read_bytes() == model
    code, summary = _train(data, run, "--epochs", "1", "--seed", "1", "--overwrite", "--json")
    assert code == 0 and summary["epochs_run"] == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files were replaced
    assert (run / "model.safetensors").read_bytes() != model


# ------------------------------------------------------------------------------ URLs
def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(value).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class ImageServer:
    """/img/N.png images; /missing.png 404; /down.png always 503; /later.png 429 with a
    Retry-After of an hour. Counts requests per path."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=()):
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with lock:
                    outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                if self.path.startswith("/img/"):
                    return self._send(200, _png(int(self.path[5:-4])))
                if self.path == "/down.png":
                    return self._send(503)
                if self.path == "/later.png":
                    return self._send(429, headers=[("Retry-After", "3600")])
                return self._send(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ImageServer()
    yield srv
    srv.close()


def test_a_url_manifest_without_a_cache_is_refused_up_front(tmp_path, server):
    train = [Sample(f"{server.url}/img/{i}.png", str(i % 3)) for i in range(8)]
    data = _split(tmp_path / "split", train, [])
    code, error = _train(data, tmp_path / "run", "--epochs", "1")
    assert (code, error) == (2, "kubik classify: error: train.jsonl lists 8 image URL(s): give "
                                "--cache-dir, a folder for the downloaded images (`kubik classify "
                                "fetch --cache-dir` fills it ahead)\n")
    assert server.hits == {}


@pytest.mark.timeout(300)
def test_failed_urls_are_not_requested_again(tmp_path, server):
    """fetch records /missing.png; training never asks for it. /down.png fails once with its
    retries in the first epoch, and is not asked for again in the second or by the next run."""
    cache = tmp_path / "cache"
    manifest = tmp_path / "urls.jsonl"
    manifest.write_text(json.dumps({"url": f"{server.url}/missing.png", "label": "0"}) + "\n")
    assert main(["classify", "fetch", str(manifest), "--cache-dir", str(cache), "--retries", "0",
                 "--json"]) == 0
    assert server.hits == {"/missing.png": 1}

    train = [Sample(f"{server.url}/img/{i}.png", str(i % 3)) for i in range(12)]
    train += [Sample(f"{server.url}/missing.png", "0"), Sample(f"{server.url}/down.png", "1")]
    val = [Sample(f"{server.url}/img/{i}.png", str(i % 3)) for i in range(100, 103)]
    data = _split(tmp_path / "split", train, val)
    args = ("--cache-dir", str(cache), "--retries", "1", "--timeout", "5", "--rate", "1000")
    code, summary = _train(data, tmp_path / "run", "--epochs", "2", "--json", *args)
    assert code == 0, summary
    assert server.hits["/missing.png"] == 1  # only fetch's request
    assert server.hits["/down.png"] == 2     # one request and one retry, in one epoch only
    assert all(count == 1 for path, count in server.hits.items() if path.startswith("/img/"))
    code, summary = _train(data, tmp_path / "run2", "--epochs", "1", "--json", *args)
    assert code == 0 and server.hits["/down.png"] == 2
    failures = FailureLog(cache / "failures.jsonl").read()
    assert sorted(row["source"].rsplit("/", 1)[1] for row in failures) == ["down.png", "missing.png"]


def test_a_retry_after_beyond_the_bound_gives_the_url_up(tmp_path, server):
    sleeps = []
    fetcher = Fetcher(FetchConfig(cache_dir=str(tmp_path), max_retries=4), sleep=sleeps.append)
    with pytest.raises(FetchError) as info:
        fetcher.get(f"{server.url}/later.png")
    assert str(info.value) == (f"{server.url}/later.png: HTTP 429, the server asks to wait 3600 s "
                               "(more than 120 s): given up; run `kubik classify fetch` again later")
    assert server.hits == {"/later.png": 1} and sleeps == []


class _RateProbe(torch.utils.data.Dataset):
    """Reports, from inside each DataLoader worker, the interval its Fetcher keeps."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.source._get_fetcher().limiter.interval


@pytest.mark.timeout(120)
def test_the_request_rate_is_shared_by_workers_and_processes(tmp_path):
    from kubik_core.classify.data import ImageSource

    source = ImageSource(FetchConfig(cache_dir=str(tmp_path), requests_per_second=10.0), processes=2)
    loader = torch.utils.data.DataLoader(_RateProbe(source), batch_size=None, num_workers=2)
    intervals = [float(value) for value in loader]
    assert intervals == [pytest.approx(0.4)] * 4  # 2 workers x 2 processes share 10 requests/s
    assert source._get_fetcher().limiter.interval == pytest.approx(0.2)  # no workers: 2 processes


def _record_many(path: str, start: int) -> None:
    log = FailureLog(path)
    for i in range(200):
        log.record(f"http://x/{(start + i) % 150}.png", "HTTP 404")


def test_failure_logs_stay_bounded(tmp_path):
    path = tmp_path / "failures.jsonl"
    processes = [multiprocessing.get_context("spawn").Process(target=_record_many, args=(str(path), s))
                 for s in (0, 75)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    sources = [row["source"] for row in FailureLog(path).read()]
    assert len(sources) == len(set(sources)) == 150  # once per URL, whichever process saw it first

    capped = FailureLog(tmp_path / "capped.jsonl", max_entries=5)
    assert [capped.record(f"s{i}", "x" * 10_000) for i in range(8)] == [True] * 5 + [False] * 3
    rows = capped.read()
    assert len(rows) == 5 and all(len(row["reason"]) == 500 for row in rows)
    with open(tmp_path / "capped.jsonl", "a") as fh:
        fh.write("{not json\n[1]\n" + "[" * 5000 + "\n")  # a damaged log: those lines are ignored
    assert len(FailureLog(tmp_path / "capped.jsonl").read()) == 5

    long_url = "http://x/" + "a" * 5000  # kept cut, and still found again
    log = FailureLog(tmp_path / "long.jsonl")
    assert log.record(long_url, "HTTP 404") and not log.record(long_url, "HTTP 404")
    assert long_url in FailureLog(tmp_path / "long.jsonl")
    assert len(FailureLog(tmp_path / "long.jsonl").read()[0]["source"]) == 2000
