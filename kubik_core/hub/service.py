"""The hub facade used by the CLI, the node and the server routes.

``Hub`` ties the clients, the downloader and the sidecar writer together:
``resolve`` a source to a file with its expected hash, ``download`` it verified into a folder
and write its sidecars, ``info_by_hash`` (and, for local callers only, ``info_for_file``),
``search`` either hub, and ``enrich`` a folder of models with CivitAI metadata looked up by hash.
"""
from __future__ import annotations

import logging
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Callable

from .civitai import (CivitaiClient, as_dict, as_id, as_list, as_text, file_sha256,
                      file_size_bytes, primary_file, summarize_version)
from .config import HubConfig
from .download import (ProgressCallback, download_file, normalize_sha256, prepare_folder,
                       sha256_file)
from .errors import FileConflict, HashMismatch, HubError, HubNotFound, SourceError
from .filenames import safe_filename
from .http import HubSession
from .sidecars import (DEFAULT_PREVIEW_MAX_NSFW, civitai_info_path, existing_preview,
                       metadata_path, nsfw_level, pick_preview, read_json, save_preview, stem_of,
                       update_metadata_json, write_civitai_info)
from .sources import RemoteFile, Source, parse_source
from .targets import MODEL_EXTENSIONS, check_extension

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, config: HubConfig | None = None, session: HubSession | None = None):
        self.config = config or HubConfig.from_env()
        self.session = session or HubSession(self.config)
        self.civitai = CivitaiClient(self.session)
        self._hf = None

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()

    @property
    def hf(self):
        if self._hf is None:  # huggingface_hub is imported only when Hugging Face is used
            from .huggingface import HuggingFaceClient

            self._hf = HuggingFaceClient(self.session)
        return self._hf

    # ------------------------------------------------------------ resolve and download
    def resolve(self, source: str | Source) -> RemoteFile:
        src = parse_source(source, self.config) if isinstance(source, str) else source
        if src.kind == "civitai":
            version_id = src.version_id
            if version_id is None:
                versions = self.civitai.model(src.model_id).get("modelVersions") or []
                if (not isinstance(versions, list) or not versions
                        or not isinstance(versions[0], dict) or as_id(versions[0].get("id")) is None):
                    raise HubNotFound(f"CivitAI model {src.model_id}: lists no versions")
                version_id = as_id(versions[0]["id"])   # CivitAI lists the newest version first
            version = self.civitai.version(version_id)
            entry = primary_file(version)
            url = entry.get("downloadUrl") or version.get("downloadUrl")
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise HubError(f"CivitAI version {version_id}: its file has no download URL")
            name = entry.get("name")
            return RemoteFile("civitai", url,
                              name if isinstance(name, str) and name else
                              f"civitai_{version_id}.safetensors",
                              file_sha256(entry), file_size_bytes(entry),
                              civitai_version=version,
                              details={"version_id": version.get("id"),
                                       "model_id": version.get("modelId"), "url": url})
        if src.kind == "hf":
            info = self.hf.file_info(src.repo_id, src.path, revision=src.revision)
            return RemoteFile("hf", info["url"], src.path.rsplit("/", 1)[-1], info["sha256"],
                              info["size_bytes"],
                              details={"repo_id": src.repo_id, "revision": src.revision,
                                       "path": src.path, "url": info["url"]})
        name = src.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return RemoteFile("url", src.url, name, None, details={"url": src.url})

    def download(self, source: str, folder: Path | str, *, expected_sha256: str | None = None,
                 filename: str | None = None, kind: str | None = None,
                 allowed_extensions: tuple[str, ...] | None = None,
                 progress: ProgressCallback | None = None,
                 check_cancel: Callable[[], None] | None = None,
                 preview_max_nsfw: int = DEFAULT_PREVIEW_MAX_NSFW) -> dict[str, Any]:
        """Download ``source`` into ``folder``; returns the ``--json`` record (see README).

        Only files with one of ``allowed_extensions`` are written (default: every model format
        of :mod:`.targets`, never code); a name whose stem another model file in the folder
        already uses is refused, since the sidecars are keyed by stem.
        """
        allowed = tuple(e for e in (allowed_extensions or MODEL_EXTENSIONS)
                        if e.lower() in MODEL_EXTENSIONS)
        if not allowed:
            raise ValueError(f"allowed_extensions: none of {allowed_extensions} is a model format")
        expected = normalize_sha256(expected_sha256)
        if filename:   # a name the caller chose is checked before any request
            check_extension(safe_filename(filename), allowed)
        remote = self.resolve(source)
        if expected and remote.sha256 and expected != remote.sha256:
            raise HashMismatch(f"expected_sha256 {expected} differs from the hub's {remote.sha256} "
                               f"for {remote.filename[:120]}; check which file you meant")
        want = expected or remote.sha256
        name = safe_filename(filename or remote.filename)
        check_extension(name, allowed)
        if remote.size_bytes and remote.size_bytes > self.config.max_download_bytes:
            raise HubError(f"{name}: the hub lists it at {remote.size_bytes / 2**30:.2f} GiB, more "
                           f"than the {self.config.max_download_bytes / 2**30:.2f} GiB one "
                           "download may write (KUBIK_HUB_MAX_DOWNLOAD_GB)")
        folder = Path(folder)
        prepare_folder(folder)
        _check_stem_is_free(folder, name)
        result = download_file(self.session, remote.url, folder, name, expected_sha256=want,
                               progress=progress, check_cancel=check_cancel)
        sidecars = self._write_sidecars(result.path, result.sha256, result.size, kind, remote,
                                        preview_max_nsfw)
        return {
            "path": str(result.path),
            "file_name": result.path.name,
            "sha256": result.sha256,
            "size_bytes": result.size,
            "status": result.status,
            "verified": want is not None,
            "resumed_from": result.resumed_from,
            "source": remote.source,
            "sidecars": [str(p) for p in sidecars],
        }

    def _write_sidecars(self, path: Path, sha256: str, size: int, kind: str | None,
                        remote: RemoteFile, preview_max_nsfw: int) -> list[Path]:
        written: list[Path] = []
        version = remote.civitai_version
        preview, level = existing_preview(path), 0
        if version is not None:
            written.append(write_civitai_info(path, version))
            image = pick_preview(version, preview_max_nsfw)
            if image is not None and preview is None:
                preview = save_preview(self.session, image, path)
                level = nsfw_level(image)
        if preview is not None:
            written.append(preview)
        details = {"source": remote.source, **remote.details}
        written.append(update_metadata_json(path, sha256=sha256, size=size, kind=kind,
                                            version=version, source=details, preview=preview,
                                            preview_nsfw_level=level))
        return written

    # ------------------------------------------------------------ look-ups
    def search(self, hub: str, query: str, *, limit: int = 20, **filters) -> list[dict[str, Any]]:
        """Search ``"civitai"`` or ``"hf"``; CivitAI items come back summarised."""
        if hub == "civitai":
            items = list(self.civitai.iter_models(query, max_items=limit, **filters))
            return [_summarize_model(item) for item in items if isinstance(item, dict)]
        if hub == "hf":
            return self.hf.search(query, limit=limit, **filters)
        raise SourceError(f"hub {hub!r}: expected 'civitai' or 'hf'")

    def info(self, hash_or_file: str) -> dict[str, Any]:
        """``info_for_file`` when ``hash_or_file`` names a local file, else ``info_by_hash``.
        For local callers (the CLI); a web request must call ``info_by_hash``."""
        if Path(hash_or_file).is_file():
            return self.info_for_file(hash_or_file)
        return self.info_by_hash(hash_or_file)

    def info_by_hash(self, file_hash: str) -> dict[str, Any]:
        """CivitAI version summary for a hash (CRC32, AutoV2, AutoV3 or SHA-256 hex)."""
        return summarize_version(self.civitai.version_by_hash(file_hash))

    def info_for_file(self, path: Path | str) -> dict[str, Any]:
        """CivitAI version summary for a local model file (hashed, sidecars first)."""
        path = Path(path)
        sha = _known_sha256(path) or sha256_file(path)
        summary = summarize_version(self.civitai.version_by_hash(sha))
        summary["sha256"] = sha
        return summary

    def enrich(self, folder: Path | str, *, kind: str | None = None, force: bool = False,
               preview_max_nsfw: int = DEFAULT_PREVIEW_MAX_NSFW,
               on_file: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
        """Look up every model file under ``folder`` by SHA-256 and write missing sidecars."""
        folder = Path(folder)
        if not folder.is_dir():
            raise HubError(f"folder {folder}: does not exist or is not a folder")
        reports = []
        for path in sorted(p for p in folder.rglob("*")
                           if p.is_file() and p.name.lower().endswith(MODEL_EXTENSIONS)):
            reports.append(self._enrich_one(path, kind, force, preview_max_nsfw))
            if on_file:
                on_file(reports[-1])
        return reports

    def _enrich_one(self, path: Path, kind, force, preview_max_nsfw) -> dict[str, Any]:
        report: dict[str, Any] = {"file": str(path)}
        stored = read_json(metadata_path(path)) or {}
        if not force and (civitai_info_path(path).exists() or stored.get("from_civitai") is False):
            return {**report, "status": "skipped"}
        sha = _known_sha256(path) or sha256_file(path)
        remote = RemoteFile("civitai", "", path.name, sha)
        try:
            version = self.civitai.version_by_hash(sha)
        except HubNotFound:
            remote.source = "local"
            self._write_sidecars(path, sha, path.stat().st_size, kind, remote, preview_max_nsfw)
            return {**report, "status": "not_found", "sha256": sha}
        except (HubError, ValueError) as exc:
            return {**report, "status": "error", "sha256": sha, "message": str(exc)}
        remote.civitai_version = version
        remote.details = {"version_id": version.get("id"), "model_id": version.get("modelId")}
        self._write_sidecars(path, sha, path.stat().st_size, kind, remote, preview_max_nsfw)
        return {**report, "status": "written", "sha256": sha, "version_id": version.get("id"),
                "base_model": version.get("baseModel")}


def _check_stem_is_free(folder: Path, name: str) -> None:
    """Refuse ``name`` when another model file in ``folder`` has the same stem: both would share
    one set of sidecars (``<stem>.metadata.json``, ``.civitai.info``, ``.preview.*``)."""
    stem = stem_of(Path(name))
    for other in folder.glob(f"{glob_escape(stem)}.*"):
        if other.name != name and stem_of(other) == stem and other.name.lower().endswith(
                MODEL_EXTENSIONS) and other.is_file():
            raise FileConflict(f"file name {name!r}: the model folder already has {other.name}, "
                               f"and both would share the sidecars {stem}.metadata.json and "
                               f"{stem}.civitai.info; pass another file name")


def _known_sha256(path: Path) -> str | None:
    """The SHA-256 a sidecar recorded for this exact file size, to avoid re-hashing GBs."""
    stored = read_json(metadata_path(path)) or {}
    sha = stored.get("sha256")
    if isinstance(sha, str) and len(sha) == 64 and stored.get("size") == path.stat().st_size:
        return sha.lower()
    return None


def _summarize_model(item: dict) -> dict[str, Any]:
    versions = as_list(item.get("modelVersions"))
    latest = as_dict(versions[0]) if versions else {}
    stats = as_dict(item.get("stats"))
    latest_id = as_id(latest.get("id"))
    return {
        "source": "civitai",
        "model_id": item.get("id"),
        "name": as_text(item.get("name")),
        "type": as_text(item.get("type")),
        "nsfw": item.get("nsfw"),
        "tags": [t for t in as_list(item.get("tags")) if isinstance(t, str)],
        "download_count": stats.get("downloadCount"),
        "thumbs_up_count": stats.get("thumbsUpCount"),
        "latest_version_id": latest_id,
        "latest_version_name": as_text(latest.get("name")),
        "base_model": as_text(latest.get("baseModel")),
        "trained_words": [w for w in as_list(latest.get("trainedWords")) if isinstance(w, str)],
        "source_string": f"civitai:{latest_id}" if latest_id else None,
    }
