"""The hub facade used by the CLI, the node and the server routes.

``Hub`` ties the clients, the downloader and the sidecar writer together:
``resolve`` a source to a file with its expected hash, ``download`` it verified into a folder
and write its sidecars, ``info`` about a hash or a local file, ``search`` either hub, and
``enrich`` a folder of models with CivitAI metadata looked up by hash.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from .civitai import CivitaiClient, file_sha256, primary_file, summarize_version
from .config import HubConfig
from .download import ProgressCallback, download_file, normalize_sha256, sha256_file
from .errors import HashMismatch, HubError, HubNotFound, SourceError, UnsafeFilename
from .filenames import safe_filename
from .http import HubSession
from .sidecars import (DEFAULT_PREVIEW_MAX_NSFW, civitai_info_path, existing_preview, metadata_path,
                       pick_preview, read_json, save_preview, update_metadata_json,
                       write_civitai_info)
from .sources import RemoteFile, Source, parse_source

log = logging.getLogger(__name__)

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf", ".pt2")


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
                if not versions or not isinstance(versions[0], dict) or not versions[0].get("id"):
                    raise HubNotFound(f"CivitAI model {src.model_id}: lists no versions")
                version_id = versions[0]["id"]   # CivitAI lists the newest version first
            version = self.civitai.version(version_id)
            entry = primary_file(version)
            url = entry.get("downloadUrl") or version.get("downloadUrl")
            if not url:
                raise HubError(f"CivitAI version {version_id}: its file has no downloadUrl")
            return RemoteFile("civitai", url, entry.get("name") or f"civitai_{version_id}.safetensors",
                              file_sha256(entry), int(float(entry.get("sizeKB") or 0) * 1024) or None,
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
        """Download ``source`` into ``folder``; returns the ``--json`` record (see README)."""
        expected = normalize_sha256(expected_sha256)
        remote = self.resolve(source)
        if expected and remote.sha256 and expected != remote.sha256:
            raise HashMismatch(f"expected_sha256 {expected} differs from the hub's {remote.sha256} "
                               f"for {remote.filename}; check which file you meant")
        want = expected or remote.sha256
        name = safe_filename(filename or remote.filename)
        if allowed_extensions and not name.lower().endswith(tuple(allowed_extensions)):
            raise UnsafeFilename(f"file name {name!r}: the target folder only lists "
                                 f"{', '.join(sorted(allowed_extensions))} files; pass a file "
                                 "name with one of these extensions")
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
                level = int(image.get("nsfwLevel") or 0)
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
            return [_summarize_model(item) for item in items]
        if hub == "hf":
            return self.hf.search(query, limit=limit, **filters)
        raise SourceError(f"hub {hub!r}: expected 'civitai' or 'hf'")

    def info(self, hash_or_file: str) -> dict[str, Any]:
        """CivitAI version summary for a hash, or for a local file (hashed, sidecars first)."""
        path = Path(hash_or_file)
        if path.is_file():
            sha = _known_sha256(path) or sha256_file(path)
            summary = summarize_version(self.civitai.version_by_hash(sha))
            summary["sha256"] = sha
            return summary
        return summarize_version(self.civitai.version_by_hash(hash_or_file))

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


def _known_sha256(path: Path) -> str | None:
    """The SHA-256 a sidecar recorded for this exact file size, to avoid re-hashing GBs."""
    stored = read_json(metadata_path(path)) or {}
    sha = stored.get("sha256")
    if isinstance(sha, str) and len(sha) == 64 and stored.get("size") == path.stat().st_size:
        return sha.lower()
    return None


def _summarize_model(item: dict) -> dict[str, Any]:
    versions = item.get("modelVersions") or []
    latest = versions[0] if versions else {}
    stats = item.get("stats") or {}
    return {
        "source": "civitai",
        "model_id": item.get("id"),
        "name": item.get("name"),
        "type": item.get("type"),
        "nsfw": item.get("nsfw"),
        "tags": list(item.get("tags") or []),
        "download_count": stats.get("downloadCount"),
        "thumbs_up_count": stats.get("thumbsUpCount"),
        "latest_version_id": latest.get("id"),
        "latest_version_name": latest.get("name"),
        "base_model": latest.get("baseModel"),
        "trained_words": list(latest.get("trainedWords") or []),
        "source_string": f"civitai:{latest['id']}" if latest.get("id") else None,
    }
