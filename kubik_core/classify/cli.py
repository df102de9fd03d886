"""``kubik classify split|fetch|train|eval|export|predict``.

``--json`` outputs are stable interfaces:

- split:   {"out", "classes", "images": {train,val,test}, "groups": {...}, "classes_without_val",
            "classes_without_test", "classes_without_train"}
- fetch:   {"urls", "cached", "downloaded", "failed", "failures_file"}
- train:   {"out", "model", "epochs_run", "stopped_early", "best": {epoch, val_top1, val_macro_top1, ...},
            "classes_without_train": [names of classes with no usable training image]}
- eval:    {"top1", "top5", "macro_top1", "macro_top5", "count", "loss", "skipped", "most_confused"}
- export:  {"model", "epoch", "weights": "last" | "ema"}
- predict: [{"image", "labels", "scores"} | {"image", "error"}], in argument order
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

from ..common.paths import writable_folder
from ..common.precision import PRECISIONS, check_precision


def register(subparsers) -> None:
    parser = subparsers.add_parser("classify", help="train, evaluate and run image classifiers",
                                   description="Image classifiers with timm: honest splits, "
                                               "training (CPU/GPU/torchrun), evaluation, prediction.")
    sub = parser.add_subparsers(dest="classify_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("split", help="stratified, group-aware train/val/test split with one class map")
    p.add_argument("source", help="image folder tree (root/<label>/...), .csv or .jsonl manifest")
    p.add_argument("--out", required=True, help="folder for train/val/test.jsonl and classes.json")
    p.add_argument("--val", type=float, default=0.1, help="share of groups per class for val (0.1)")
    p.add_argument("--test", type=float, default=0.1, help="share of groups per class for test (0.1)")
    p.add_argument("--max-per-class", type=int, default=None, help="cap val and test groups per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier split in OUT")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_split)

    p = sub.add_parser("fetch", help="download a manifest's URLs into the cache (resumable)")
    p.add_argument("manifest", help=".csv or .jsonl manifest with URLs")
    p.add_argument("--cache-dir", required=True, help="image cache folder (shared with training)")
    p.add_argument("--max-cache-gb", type=float, default=10.0, help="cache size cap, LRU eviction (10)")
    p.add_argument("--rate", type=float, default=5.0, help="requests per second (5)")
    p.add_argument("--retries", type=int, default=4, help="retries on 429/5xx/timeouts (4)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per request (20)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("train", help="train a timm classifier on a split folder")
    p.add_argument("--data", required=True, help="split folder from `kubik classify split`")
    p.add_argument("--out", required=True, help="run folder (checkpoint, model, curves)")
    p.add_argument("--arch", default="resnet18", help="any timm architecture name (resnet18)")
    p.add_argument("--model-kwargs", default="{}", help='timm keyword arguments as JSON, e.g. \'{"img_size": 32}\'')
    p.add_argument("--pretrained", default=None, help="local weights file to start from (never the hub)")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: the architecture's)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64, help="global batch over all processes (64)")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--opt", default="adamw", help="timm optimizer name (adamw)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--layer-decay", type=float, default=None, help="layer-wise lr decay, e.g. 0.75")
    p.add_argument("--clip-grad", type=float, default=None)
    p.add_argument("--smoothing", type=float, default=0.1, help="label smoothing (0.1)")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0 = off)")
    p.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha (0 = off)")
    p.add_argument("--randaugment", default="rand-m9-mstd0.5-inc1", help="timm RandAugment spec, or 'none'")
    p.add_argument("--scale-min", type=float, default=0.08, help="RandomResizedCrop minimum area (0.08)")
    p.add_argument("--hflip", type=float, default=0.5, help="horizontal flip probability (0.5)")
    p.add_argument("--color-jitter", type=float, default=0.4)
    p.add_argument("--reprob", type=float, default=0.0, help="random erasing probability")
    p.add_argument("--drop-path", type=float, default=0.0)
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay, e.g. 0.999 (0 = off)")
    p.add_argument("--loss", choices=("ce", "logit_adjusted"), default="ce",
                   help="logit_adjusted = balanced softmax for long-tailed data")
    p.add_argument("--tau", type=float, default=1.0, help="logit adjustment strength (1)")
    p.add_argument("--balanced-sampler", action="store_true", help="draw classes equally often")
    p.add_argument("--smart-crop", action="store_true", help="saliency crop before the transforms")
    p.add_argument("--precision", dest="amp", type=_precision, default="fp32",
                   metavar="{" + ",".join(PRECISIONS) + "}",
                   help="mixed precision (fp32): auto = bf16 where the GPU runs it natively, "
                        "else fp32; the older spelling --amp none|bf16|fp16 still works")
    p.add_argument("--amp", dest="amp", type=_precision, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers per process (4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=0, help="stop after N epochs without macro-accuracy gain")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run in OUT (otherwise OUT must be new or empty)")
    p.add_argument("--cache-dir", default=None, help="image cache for URL manifests")
    p.add_argument("--rate", type=float, default=5.0,
                   help="URL requests per second, all workers together (5)")
    p.add_argument("--retries", type=int, default=4, help="retries per URL on 429/5xx/timeouts (4)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per URL request (20)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="micro/macro top-1/top-5, per-class report, confusion plot")
    p.add_argument("--model", required=True, help="exported classifier (.safetensors)")
    p.add_argument("--data", required=True, help="manifest (.jsonl/.csv) or image folder tree")
    p.add_argument("--classes", default=None,
                   help="class map the data was split with (default: classes.json beside the manifest)")
    p.add_argument("--out", default=None, help="report folder (default: print only)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=None, help="image cache for URL manifests")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser("export", help="export a run's checkpoint (last or EMA weights) as a classifier")
    p.add_argument("checkpoint", help="checkpoint.pt of a `kubik classify train` run")
    p.add_argument("--out", required=True, help="classifier file to write (.safetensors, + .json)")
    p.add_argument("--ema", action="store_true", help="export the EMA weights (run trained with --ema)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_export)

    p = sub.add_parser("predict", help="labels and scores for image files")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="exported classifier (.safetensors)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.0, help="drop labels scoring below this")
    p.add_argument("--smart-crop", action=argparse.BooleanOptionalAction, default=None,
                   help="saliency crop first (default: as the model was trained)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_predict)


def _command_error(exc: BaseException):
    """CommandError for what the core raises about user input (one line, no traceback)."""
    from ..common.commands import CommandError

    if isinstance(exc, OSError) and exc.strerror:  # raised by the OS: name the file and the cause
        where = f"{exc.filename}: " if exc.filename else ""
        return CommandError(f"{where}{exc.strerror}")
    return CommandError(" ".join(str(exc).split()) or type(exc).__name__)


_USER_ERRORS = (FileNotFoundError, ValueError, OSError)  # ClassMapMismatch, CardError: ValueErrors


def _output_folder(path: str, flag: str = "--out") -> Path:
    """A folder we can write into (created now), or ValueError naming the flag."""
    return writable_folder(path, flag)


def _split(args) -> int:
    from .manifest import read_dataset
    from .split import SPLIT_FILES, split_samples, summarize, write_split

    try:
        if args.max_per_class is not None and args.max_per_class < 1:
            raise ValueError(f"--max-per-class must be at least 1, got {args.max_per_class}")
        out = Path(args.out)
        earlier = [name for name in SPLIT_FILES if (out / name).exists()] if out.is_dir() else []
        if earlier and not args.overwrite:
            raise ValueError(f"--out {out}: holds an earlier split ({', '.join(earlier)}); "
                             "add --overwrite to replace it, or choose another folder")
        result = split_samples(read_dataset(args.source), args.val, args.test, args.seed,
                               args.max_per_class)
        out = write_split(result, _output_folder(args.out))
    except _USER_ERRORS as exc:
        raise _command_error(exc) from None
    report = {k: v for k, v in result.report.items() if k != "per_class"}
    if args.json:
        print(json.dumps({"out": str(out), **report}))
    else:
        print(f"{summarize(result.report)}\nwritten to {out} (per-class counts in split_report.json)")
    return 0


def _fetch(args) -> int:
    from tqdm import tqdm

    from .fetch import FAILURES_FILE, FailureLog, FetchConfig, FetchError, Fetcher, check_cache_dir
    from .images import ImageError, decode_image
    from .manifest import read_dataset

    try:
        if not (math.isfinite(args.max_cache_gb) and 0 <= args.max_cache_gb <= 1e6):
            raise ValueError(f"--max-cache-gb must be a number from 0 to 1e6, got {args.max_cache_gb}")
        config = FetchConfig(cache_dir=args.cache_dir, max_bytes=int(args.max_cache_gb * 1024 ** 3),
                             requests_per_second=args.rate, max_retries=args.retries,
                             timeout=args.timeout)
        urls = list(dict.fromkeys(s.path for s in read_dataset(args.manifest) if s.is_url))
        if not urls:
            raise ValueError(f"{args.manifest}: lists no http(s) URLs (local images need no fetch)")
        check_cache_dir(args.cache_dir)
    except _USER_ERRORS as exc:
        raise _command_error(exc) from None
    fetcher = Fetcher(config)
    failures = FailureLog(Path(args.cache_dir) / FAILURES_FILE)
    cached = downloaded = failed = 0
    fetched = []
    for url in tqdm(urls, desc="fetch", unit="img", disable=args.json):
        was_cached = fetcher.cached(url)
        try:
            decode_image(fetcher.get(url), url)
        except (FetchError, ImageError) as exc:
            failures.record(url, exc.reason if isinstance(exc, FetchError) else str(exc))
            fetcher.cache_path(url).unlink(missing_ok=True)  # a corrupt file must not stay cached
            failed += 1
            continue
        fetched.append(url)
        cached += was_cached
        downloaded += not was_cached
    failures.forget(fetched)  # fetched fine now: training may use them again
    result = {"urls": len(urls), "cached": cached, "downloaded": downloaded, "failed": failed,
              "failures_file": str(failures.path)}
    print(json.dumps(result) if args.json else
          f"{len(urls)} URLs: {cached} already cached, {downloaded} downloaded, {failed} failed"
          + (f" (see {failures.path})" if failed else ""))
    return 0


def _parse_model_kwargs(text: str) -> dict:
    from ..common.bounded_json import BoundedJSONError, loads
    from .schema import check_model_kwargs

    try:
        value = loads(text, max_depth=4, max_bytes=64 * 1024)
    except BoundedJSONError as exc:
        raise ValueError(f"--model-kwargs is not a JSON object ({exc}), e.g. "
                         "'{\"img_size\": 32}'") from None
    return check_model_kwargs(value, "--model-kwargs")


def _precision(value: str) -> str:
    """``--precision`` (or the older ``--amp``) as a word of the one precision vocabulary."""
    try:
        return check_precision(value, "the value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _train(args) -> int:
    from .data import AugmentConfig
    from .train import TrainConfig, train

    try:
        augment = AugmentConfig(scale=(args.scale_min, 1.0), hflip=args.hflip,
                                color_jitter=args.color_jitter, randaugment=args.randaugment,
                                random_erasing=args.reprob)
        config = TrainConfig(
            data=args.data, out=args.out, architecture=args.arch,
            model_kwargs=_parse_model_kwargs(args.model_kwargs),
            pretrained=args.pretrained, img_size=args.img_size, epochs=args.epochs,
            batch_size=args.batch_size, grad_accum=args.grad_accum, optimizer=args.opt, lr=args.lr,
            weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
            layer_decay=args.layer_decay, clip_grad=args.clip_grad, label_smoothing=args.smoothing,
            mixup=args.mixup, cutmix=args.cutmix, augment=augment, drop_path=args.drop_path,
            ema_decay=args.ema, loss=args.loss, tau=args.tau, balanced_sampler=args.balanced_sampler,
            smart_crop=args.smart_crop, amp=args.amp, channels_last=args.channels_last,
            compile=args.compile, sync_bn=args.sync_bn, device=args.device, workers=args.workers,
            seed=args.seed, patience=args.patience, resume=args.resume, overwrite=args.overwrite,
            cache_dir=args.cache_dir, fetch_rate=args.rate, fetch_retries=args.retries,
            fetch_timeout=args.timeout, show_progress=not args.json)
        result = train(config)
    except _USER_ERRORS as exc:
        raise _command_error(exc) from None
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 speaks for all
    summary = {"out": str(result.out_dir), "model": str(result.model_path),
               "epochs_run": len(result.history), "stopped_early": result.stopped_early,
               "best": result.best, "classes_without_train": result.classes_without_train}
    if args.json:
        print(json.dumps(summary))
    else:
        best = result.best
        acc = (f"val top-1 {best['val_top1']:.4f}, macro top-1 {best['val_macro_top1']:.4f} "
               if "val_top1" in best else "")
        print(f"best epoch {best['epoch']}: {acc}-> {result.model_path}")
        missing = result.classes_without_train
        if missing:
            shown = ", ".join(repr(name) for name in missing[:5]) + (" ..." if len(missing) > 5 else "")
            print(f"note: {len(missing)} class(es) had no usable training image, so the model "
                  f"cannot predict them: {shown} (see skipped.jsonl in the run folder)")
    return 0


def _eval(args) -> int:
    from .classmap import ClassMap
    from .data import ImageSource, ManifestDataset
    from ..common.distributed import resolve_device
    from .evaluate import evaluate_dataset, write_eval_report
    from .fetch import FailureLog, FetchConfig, check_cache_dir
    from .manifest import read_dataset
    from .predict import Classifier

    try:
        if not 1 <= args.batch_size <= 65_536:
            raise ValueError(f"--batch-size must be from 1 to 65536, got {args.batch_size}")
        if not 0 <= args.workers <= 256:
            raise ValueError(f"--workers must be from 0 to 256, got {args.workers}")
        device = resolve_device(args.device)
        out = _output_folder(args.out) if args.out else None
        classifier = Classifier.load(args.model, device)
        class_map = classifier.card.class_map
        classes_file = Path(args.classes) if args.classes else Path(args.data).parent / "classes.json"
        if args.classes or (Path(args.data).is_file() and classes_file.is_file()):
            class_map.require_same(ClassMap.load(classes_file), f"the data ({classes_file})")
        samples = read_dataset(args.data)
        if any(s.is_url for s in samples) and not args.cache_dir:
            raise ValueError(f"{args.data} lists image URLs: give --cache-dir, a folder for the "
                             "downloaded images")
        if args.cache_dir:
            check_cache_dir(args.cache_dir)
        failures = FailureLog(out / "skipped.jsonl") if out else None
        fetch = FetchConfig(cache_dir=args.cache_dir) if args.cache_dir else None
        dataset = ManifestDataset(samples, class_map, classifier.transform(), ImageSource(fetch), failures)
        if dataset.first_loadable() is None:
            raise ValueError(f"{args.data}: none of its {len(samples)} images could be loaded"
                             + (f" (see {failures.path})" if failures else " (add --out to list why)"))
        report = evaluate_dataset(classifier.model, dataset, class_map, device,
                                  batch_size=args.batch_size, workers=args.workers)
        if out:
            summary = write_eval_report(report, class_map, out)
        else:
            summary = {**report.metrics.summary(), "loss": report.loss, "skipped": report.skipped,
                       "most_confused": report.metrics.most_confused(list(class_map.names))}
    except _USER_ERRORS as exc:
        raise _command_error(exc) from None
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['count']} images ({summary['skipped']} skipped): top-1 {summary['top1']:.4f}, "
              f"top-5 {summary['top5']:.4f}, macro top-1 {summary['macro_top1']:.4f}, "
              f"macro top-5 {summary['macro_top5']:.4f}" + (f"; report in {args.out}" if args.out else ""))
    return 0


def _export(args) -> int:
    import torch

    from .model import ModelCard, export_classifier

    try:
        out = Path(args.out)
        if out.suffix != ".safetensors":
            raise ValueError(f"--out {out.name}: exported classifiers are .safetensors files")
        if out.is_dir():
            raise ValueError(f"--out {out}: is a folder; name the .safetensors file to write")
        if out.exists() and not args.overwrite:
            raise ValueError(f"--out {out}: exists already; add --overwrite to replace it")
        if out.parent.exists() and not out.parent.is_dir():
            raise ValueError(f"--out {out}: {out.parent} is a file, not a folder")
        _output_folder(str(out.parent), "--out")
        checkpoint = Path(args.checkpoint)
        if not checkpoint.exists():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        if not checkpoint.is_file():
            raise ValueError(f"{checkpoint}: is a folder; name the checkpoint.pt of a run")
        try:
            with warnings.catch_warnings():  # torch warns about foreign pickles; the error says it all
                warnings.simplefilter("ignore")
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated file, not a checkpoint, unsafe pickle content
            raise ValueError(f"{checkpoint}: not a readable training checkpoint ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]})") from None
        if (not isinstance(state, dict) or not isinstance(state.get("card"), str)
                or not isinstance(state.get("model"), dict) or not isinstance(state.get("epoch"), int)):
            raise ValueError(f"{checkpoint}: not a `kubik classify train` checkpoint")
        weights = state.get("ema") if args.ema else state["model"]
        if weights is None:
            raise ValueError("--ema: this run was trained without --ema")
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise ValueError(f"{checkpoint}: its weights are not a state dict of tensors")
        path = export_classifier(weights, ModelCard.from_json(state["card"], str(checkpoint)), out)
    except _USER_ERRORS as exc:
        raise _command_error(exc) from None
    result = {"model": str(path), "epoch": state["epoch"], "weights": "ema" if args.ema else "last"}
    print(json.dumps(result) if args.json else f"epoch {state['epoch']} ({result['weights']} weights) -> {path}")
    return 0


def _predict(args) -> int:
    from ..common.distributed import resolve_device
    from .images import ImageError, load_image
    from .predict import Classifier

    try:
        if args.top_k < 1:
            raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
        if not (math.isfinite(args.threshold) and 0 <= args.threshold <= 1):
            raise ValueError(f"--threshold must be a score from 0 to 1, got {args.threshold}")
        classifier = Classifier.load(args.model, resolve_device(args.device))
    except _USER_ERRORS as exc:
        raise _command_error(exc) from None
    results: list[dict] = [{"image": name} for name in args.images]
    for start in range(0, len(results), 64):  # bounded memory for long file lists
        loaded = []
        for row in results[start:start + 64]:
            try:
                loaded.append((row, load_image(row["image"])))
            except ImageError as exc:
                row["error"] = str(exc)
        if loaded:
            predictions = classifier.predict([image for _, image in loaded], args.top_k,
                                             args.threshold, args.smart_crop)
            for (row, _), prediction in zip(loaded, predictions):
                row.update(prediction.to_dict())
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}", file=sys.stderr)
            else:
                shown = ", ".join(f"{l} {s:.3f}" for l, s in zip(r["labels"], r["scores"])) or "(none above threshold)"
                print(f"{r['image']}: {shown}")
    return 1 if any("error" in r for r in results) else 0
