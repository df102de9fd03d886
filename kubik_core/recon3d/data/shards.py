"""A preprocessed dataset packed into WebDataset-style tar shards, and read back for training.

Layout of a shard folder (``kubik 3d preprocess ... --shards DIR``)::

    DIR/shard-000000.tar    up to ``shard_size`` samples, one per mesh, in manifest (id) order
    DIR/shard-000001.tar    ...
    DIR/shards.json         the index: dataset name, sample count, each shard's file and count

A sample is the mesh's files under one key, as WebDataset groups them: ``KEY.meta.json``,
``KEY.samples.npz``, ``KEY.views.npz`` and ``KEY.view_000.png`` ... when rendered. ``KEY`` is the
mesh id with ``%`` and ``.`` percent-encoded (WebDataset splits a name at its first dot).
Shards stream from local disk or object storage (``webdataset``, ``tar tf``, any tar reader);
``kubik 3d train-vae``/``encode``/``train-flow`` take a shard folder wherever they take a dataset
folder. Each shard is written to a temporary name and renamed; the index is written last. Tar
headers carry no time or owner, so the same dataset always gives the same bytes; a shard whose
meshes did not change since the last run is not rewritten.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Iterator

from ...common.atomic import atomic_path
from ...common.bounded_json import BoundedJSONError
from ...common.bounded_json import loads as bounded_loads
from ..storage import load_json_object, save_json_atomic

INDEX = "shards.json"
FORMAT_VERSION = 1
MAX_MEMBER_BYTES = 1 << 30   # one file of a sample (a samples.npz of 16 M points per kind is ~600 MB)


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def sample_key(mesh_id: str) -> str:
    return mesh_id.replace("%", "%25").replace(".", "%2E")


def mesh_id_of(key: str) -> str:
    return key.replace("%2E", ".").replace("%25", "%")


def _sample_files(folder: Path, meta: dict) -> list[str]:
    """The files of one finished mesh folder, as its meta.json lists them (never stray files)."""
    views = meta.get("views") if isinstance(meta.get("views"), dict) else {}
    names = ["meta.json", "samples.npz"]
    if isinstance(views.get("maps"), str):
        names.append(views["maps"])
    names += [n for n in views.get("rgba") or [] if isinstance(n, str)]
    return [n for n in names if _plain(n) and (folder / n).is_file()]


def _plain(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and "\x00" not in name


def write_shards(dataset, folder, shard_size: int = 1000) -> dict:
    """Pack the finished meshes of ``dataset`` (its manifest.json) into ``folder``; returns
    {"folder", "shards", "samples", "written"} (written: shards rewritten by this call)."""
    dataset, folder = Path(dataset), Path(folder)
    if shard_size < 1:
        raise ValueError(f"shard size must be at least 1, not {shard_size}")
    folder.mkdir(parents=True, exist_ok=True)
    ids = [entry["id"] for entry in load_json_object(dataset / "manifest.json").get("meshes", [])]
    previous = {s["file"]: s for s in _old_index(folder).get("shards", []) if isinstance(s, dict)}
    shards, written = [], 0
    for number, start in enumerate(range(0, len(ids), shard_size)):
        members = []  # (key, [(name, path)])
        digest = hashlib.sha256()
        for mesh in ids[start:start + shard_size]:
            try:  # the manifest lists finished meshes only; one removed since is left out
                meta = load_json_object(dataset / mesh / "meta.json")
            except ValueError:
                continue
            files = _sample_files(dataset / mesh, meta)
            members.append((sample_key(mesh), [(n, dataset / mesh / n) for n in files]))
            digest.update(mesh.encode() + b"\0" + (dataset / mesh / "meta.json").read_bytes())
        name = shard_name(number)
        old = previous.get(name, {})
        if not (old.get("digest") == digest.hexdigest() and (folder / name).is_file()
                and (folder / name).stat().st_size == old.get("bytes")):
            _write_tar(folder / name, members)
            written += 1
        shards.append({"file": name, "count": len(members), "bytes": (folder / name).stat().st_size,
                       "digest": digest.hexdigest()})
    index = {"format_version": FORMAT_VERSION, "dataset": dataset.name, "shard_size": shard_size,
             "count": sum(s["count"] for s in shards), "shards": shards}
    save_json_atomic(folder / INDEX, index)
    for stale in folder.glob("shard-*.tar"):  # shards of an earlier, larger run
        if stale.name not in {s["file"] for s in shards}:
            stale.unlink()
    return {"folder": str(folder), "shards": len(shards), "samples": index["count"], "written": written}


def _write_tar(path: Path, members: list[tuple[str, list[tuple[str, Path]]]]) -> None:
    with atomic_path(path) as temporary, tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
        for key, files in members:
            for name, source in files:
                info = tarfile.TarInfo(f"{key}.{name}")
                info.size, info.mode, info.mtime = source.stat().st_size, 0o644, 0
                with open(source, "rb") as handle:
                    tar.addfile(info, handle)


def _old_index(folder: Path) -> dict:
    try:
        return load_json_object(folder / INDEX)
    except ValueError:  # none yet, or damaged: every shard is written again
        return {}


def is_shard_folder(path) -> bool:
    return (Path(path) / INDEX).is_file()


def shard_entries(folder) -> list[dict]:
    """The samples of a shard folder as :func:`.shapes.dataset_entries` gives a dataset folder's,
    with the files' bytes instead of paths: {"id", "dir" (the shard), "samples" (npz bytes),
    "views" (png bytes, in the order of meta.json), "cameras"}. The index and every member are
    read as hostile input: plain names, bounded sizes, regular files only."""
    folder = Path(folder)
    index = load_json_object(folder / INDEX)
    shards, dataset = index.get("shards"), index.get("dataset")
    if not (isinstance(shards, list) and all(isinstance(s, dict) and _plain(s.get("file")) for s in shards)
            and _plain(dataset)):
        raise ValueError(f"{folder / INDEX}: needs a dataset name and a list of shards with plain file names; "
                         "write the shards again with `kubik 3d preprocess ... --shards`")
    entries = []
    for shard in shards:
        for key, files in _samples_of(folder / shard["file"]):
            where = f"{folder / shard['file']}: sample {key[:80]}"
            if "meta.json" not in files or "samples.npz" not in files:
                raise ValueError(f"{where} lacks its meta.json or samples.npz; write the shards again")
            try:
                meta = bounded_loads(files["meta.json"])
            except BoundedJSONError as exc:
                raise ValueError(f"{where}: meta.json cannot be read ({exc})") from None
            views = (meta.get("views") or {}) if isinstance(meta, dict) else None
            names = (views.get("rgba") or []) if isinstance(views, dict) else None
            cameras = (views.get("camera_to_world") or []) if isinstance(views, dict) else None
            if not isinstance(names, list) or not all(n in files for n in names) or not isinstance(cameras, list):
                raise ValueError(f"{where}: its views must list renders that are in the sample, and cameras; "
                                 "write the shards again")
            entries.append({"id": f"{dataset}/{mesh_id_of(key)}", "dir": folder / shard["file"],
                            "samples": files["samples.npz"], "views": [files[n] for n in names],
                            "cameras": cameras})
    return entries


def _samples_of(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {file name: bytes}) for each sample of a tar shard, read front to back."""
    try:
        with tarfile.open(path, "r|") as tar:  # streaming: a shard is never read twice
            key, files = None, {}
            for member in tar:
                name = member.name
                if not member.isfile() or "/" in name or "." not in name:
                    raise ValueError(f"{path}: member {name[:80]!r} is not a sample file (KEY.NAME); "
                                     "write the shards again")
                if member.size > MAX_MEMBER_BYTES:
                    raise ValueError(f"{path}: member {name[:80]!r} is larger than {MAX_MEMBER_BYTES} bytes")
                member_key, file_name = name.split(".", 1)
                if member_key != key:
                    if key is not None:
                        yield key, files
                    key, files = member_key, {}
                files[file_name] = tar.extractfile(member).read()
            if key is not None:
                yield key, files
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable tar shard ({exc}); write the shards again") from None


def open_view(view) -> "io.BytesIO | Path":
    """What PIL's Image.open takes for a view: its path (dataset folder) or its bytes (shard)."""
    return io.BytesIO(view) if isinstance(view, bytes) else view
