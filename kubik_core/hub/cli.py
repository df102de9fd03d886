"""``kubik hub ...``: search CivitAI / Hugging Face, look up hashes, download, enrich folders.

Every sub-command takes ``--json`` for a stable, machine-readable answer (documented in
``kubik_core/hub/README.md``); otherwise it prints a short human summary. Tokens and endpoints
come from the environment (see :mod:`kubik_core.hub.config`).
"""
from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    hub = subparsers.add_parser("hub", help="CivitAI / Hugging Face: search, info, verified downloads")
    sub = hub.add_subparsers(dest="hub_command", metavar="ACTION")
    sub.required = True

    search = sub.add_parser("search", help="search CivitAI models or Hugging Face repositories")
    search.add_argument("hub", choices=("civitai", "hf"))
    search.add_argument("query", nargs="?", default="")
    search.add_argument("--limit", type=int, default=20, help="at most this many results (default 20)")
    search.add_argument("--type", dest="types", help="CivitAI model type, e.g. LORA, Checkpoint")
    search.add_argument("--base-model", help='CivitAI base model, e.g. "SDXL 1.0", "Pony"')
    search.add_argument("--sort", help='CivitAI: "Highest Rated", "Most Downloaded", "Newest"; '
                                       "HF: downloads, likes, last_modified ...")
    search.add_argument("--filter", help="Hugging Face tag filter, e.g. diffusers, lora")
    search.add_argument("--json", action="store_true", help="print a JSON list")
    search.set_defaults(func=_search)

    info = sub.add_parser("info", help="CivitAI version info for a hash (AutoV2/SHA-256) or a local file")
    info.add_argument("target", metavar="HASH_OR_FILE")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info)

    files = sub.add_parser("files", help="list a Hugging Face repository's files with sizes and SHA-256")
    files.add_argument("repo", metavar="OWNER/REPO")
    files.add_argument("--revision", default="main")
    files.add_argument("--json", action="store_true")
    files.set_defaults(func=_files)

    download = sub.add_parser("download", help="download a model, verified, with sidecars")
    download.add_argument("source", help="civitai:<version id>, hf:<owner>/<repo>/<file>, or a URL")
    download.add_argument("--dest", required=True, help="target folder (e.g. ComfyUI/models/loras)")
    download.add_argument("--sha256", help="expected SHA-256 (required in practice for plain URLs)")
    download.add_argument("--name", help="file name to save as (default: the hub's, sanitised)")
    download.add_argument("--kind", help="ComfyUI model folder kind (loras, checkpoints, embeddings ...): "
                                         "labels the sidecars and limits the file types to that "
                                         "folder's model formats")
    download.add_argument("--json", action="store_true")
    download.set_defaults(func=_download)

    enrich = sub.add_parser("enrich", help="look up every model in a folder on CivitAI by hash and "
                                           "write missing sidecars")
    enrich.add_argument("folder")
    enrich.add_argument("--kind", help="model kind for the sidecars (loras, checkpoints ...)")
    enrich.add_argument("--force", action="store_true", help="look up files that already have sidecars")
    enrich.add_argument("--json", action="store_true")
    enrich.set_defaults(func=_enrich)


def _hub():
    from ..common.commands import CommandError
    from .service import Hub

    try:
        return Hub()
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _run(action):
    """Run ``action()``; hub and input errors become one-line CommandErrors."""
    from ..common.commands import CommandError
    from .errors import HubError

    try:
        return action()
    except (HubError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:   # a local file or folder that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        raise CommandError(f"{where}{exc.strerror or type(exc).__name__}") from None


def _print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _search(args) -> int:
    filters = {}
    if args.hub == "civitai":
        filters = {k: v for k, v in (("types", args.types), ("base_models", args.base_model),
                                     ("sort", args.sort)) if v}
    else:
        filters = {k: v for k, v in (("filter", args.filter), ("sort", args.sort)) if v}
    results = _run(lambda: _hub().search(args.hub, args.query, limit=args.limit, **filters))
    if args.json:
        _print_json(results)
        return 0
    for item in results:
        if item["source"] == "civitai":
            print(f"{item['source_string'] or '-':<18} {item['type'] or '':<11} "
                  f"{item['base_model'] or '':<14} {item['download_count'] or 0:>9}  {item['name']}")
        else:
            print(f"hf:{item['repo_id']:<50} {item['downloads'] or 0:>10}  {item['pipeline_tag'] or ''}")
    if not results:
        print("no results")
    return 0


def _info(args) -> int:
    summary = _run(lambda: _hub().info(args.target))
    if args.json:
        _print_json(summary)
        return 0
    print(f"{summary['model_name']} / {summary['version_name']}  (civitai:{summary['version_id']})")
    print(f"  type {summary['type']}, base model {summary['base_model']}")
    print(f"  trigger words: {', '.join(summary['trained_words']) or '-'}")
    for entry in summary["files"]:
        print(f"  file {entry['name']}  sha256 {entry['sha256']}")
    return 0


def _files(args) -> int:
    files = _run(lambda: _hub().hf.list_files(args.repo, revision=args.revision))
    if args.json:
        _print_json(files)
        return 0
    for entry in files:
        print(f"{entry['size_bytes'] or 0:>14}  {entry['sha256'] or '-':<64}  {entry['path']}")
    return 0


def _check_dest(dest: str) -> None:
    """One clear line for a --dest that is a file or a place we cannot write to."""
    from pathlib import Path

    from ..common.commands import CommandError
    from .download import check_folder
    from .errors import HubError

    try:
        check_folder(Path(dest))
    except HubError as exc:
        raise CommandError(f"--dest {exc}") from None


def _download(args) -> int:
    from tqdm import tqdm

    from .targets import cli_extensions

    allowed = _run(lambda: cli_extensions(args.kind))
    _check_dest(args.dest)
    with tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc="download",
              disable=args.json or None, file=sys.stderr) as bar:
        def progress(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        record = _run(lambda: _hub().download(args.source, args.dest, expected_sha256=args.sha256,
                                              filename=args.name, kind=args.kind,
                                              allowed_extensions=allowed, progress=progress))
    if args.json:
        _print_json(record)
        return 0
    state = "verified" if record["verified"] else "NOT verified (no hash known; pass --sha256)"
    print(f"{record['status']}: {record['path']}\n  sha256 {record['sha256']} ({state})")
    for sidecar in record["sidecars"]:
        print(f"  sidecar {sidecar}")
    return 0


def _enrich(args) -> int:
    from tqdm import tqdm

    hub = _hub()
    with tqdm(desc="enrich", unit="file", disable=args.json or None, file=sys.stderr) as bar:
        reports = _run(lambda: hub.enrich(args.folder, kind=args.kind, force=args.force,
                                          on_file=lambda report: bar.update(1)))
    if args.json:
        _print_json(reports)
        return 0
    counts: dict[str, int] = {}
    for report in reports:
        counts[report["status"]] = counts.get(report["status"], 0) + 1
        if report["status"] == "error":
            print(f"error: {report['file']}: {report['message']}")
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no model files found")
    return 0
