"""Hugging Face search, file listing and hf: downloads through huggingface_hub, against a stand-in."""
from __future__ import annotations

import json
import os

import pytest

from kubik_core.hub.errors import HashMismatch, HubAuthError, HubNotFound
from kubik_core.hub.sources import parse_source

from hub_stand_ins import CIVITAI_TOKEN, HF_TOKEN, hf_tree_entry, sha256_hex

WEIGHTS = os.urandom(400_000)
CONFIG = b'{"model_type": "test"}'
REPO = "kubik-test/tiny-unet"


@pytest.fixture
def repo(hf_server, cdn_server):
    """A repository with an LFS file (served by the CDN after a redirect) and a small git file."""
    cdn_server.add_file("/xet/blob-1", WEIGHTS)
    hf_server.redirects[f"/{REPO}/resolve/main/unet/model.safetensors"] = f"{cdn_server.base}/xet/blob-1"
    hf_server.add_file(f"/{REPO}/resolve/main/config.json", CONFIG, "application/json")
    tree = {
        "": [hf_tree_entry("config.json", CONFIG, lfs=False),
             {"type": "directory", "oid": "d" * 40, "size": 0, "path": "unet"},
             hf_tree_entry("unet/model.safetensors", WEIGHTS)],
        "unet": [hf_tree_entry("unet/model.safetensors", WEIGHTS)],
    }
    hf_server.json[f"/api/models/{REPO}/tree/main"] = tree[""]
    hf_server.json[f"/api/models/{REPO}/tree/main/unet"] = tree["unet"]
    hf_server.json["/api/models"] = [
        {"_id": "1", "id": REPO, "likes": 7, "downloads": 99, "tags": ["diffusers", "unet"],
         "pipeline_tag": "text-to-image", "library_name": "diffusers", "private": False},
    ]
    return tree


def test_search_lists_repositories(make_hub, repo, hf_server):
    found = make_hub().search("hf", "tiny", limit=5)
    assert found == [{"source": "hf", "repo_id": REPO, "downloads": 99, "likes": 7,
                      "tags": ["diffusers", "unet"], "pipeline_tag": "text-to-image",
                      "library_name": "diffusers"}]
    assert hf_server.requests_to("/api/models")[0].query["search"] == ["tiny"]


def test_file_listing_has_sizes_and_lfs_sha256(make_hub, repo, hf_server):
    files = {f["path"]: f for f in make_hub().hf.list_files(REPO)}
    assert files["unet/model.safetensors"]["sha256"] == sha256_hex(WEIGHTS)
    assert files["unet/model.safetensors"]["size_bytes"] == len(WEIGHTS)
    assert files["config.json"]["sha256"] is None      # not an LFS file: no SHA-256 from the hub
    assert files["config.json"]["url"] == f"{hf_server.base}/{REPO}/resolve/main/config.json"


def test_hf_download_is_verified_against_lfs_hash(make_hub, repo, hf_server, cdn_server, tmp_path):
    record = make_hub().download(f"hf:{REPO}/unet/model.safetensors", tmp_path / "unet", kind="diffusion_models")
    assert record["verified"] and record["sha256"] == sha256_hex(WEIGHTS)
    assert (tmp_path / "unet" / "model.safetensors").read_bytes() == WEIGHTS
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["model.metadata.json", "model.safetensors"]
    meta = json.loads((tmp_path / "unet" / "model.metadata.json").read_text())
    assert meta["from_civitai"] is False and meta["sha256"] == sha256_hex(WEIGHTS)
    assert meta["kubik_source"] == {"source": "hf", "repo_id": REPO, "revision": "main",
                                    "path": "unet/model.safetensors",
                                    "url": f"{hf_server.base}/{REPO}/resolve/main/unet/model.safetensors"}
    hf_seen = [{k.lower(): v for k, v in s.headers.items()} for s in hf_server.requests_to("/")]
    assert hf_seen and all(h.get("authorization") == f"Bearer {HF_TOKEN}" for h in hf_seen)
    assert cdn_server.seen and all("authorization" not in str(s.headers).lower() for s in cdn_server.seen)
    assert all(CIVITAI_TOKEN not in str(h) for h in hf_seen)


def test_resolve_urls_are_understood(make_hub, repo, hf_server):
    config = make_hub().config
    source = parse_source(f"{hf_server.base}/{REPO}/blob/v2/unet/model.safetensors", config)
    assert (source.kind, source.repo_id, source.revision, source.path) == ("hf", REPO, "v2", "unet/model.safetensors")
    source = parse_source("hf:org/repo@abc123/a/b.safetensors", config)
    assert (source.repo_id, source.revision, source.path) == ("org/repo", "abc123", "a/b.safetensors")


def test_wrong_lfs_hash_deletes_the_partial_file(make_hub, repo, cdn_server, tmp_path):
    cdn_server.add_file("/xet/blob-1", WEIGHTS[::-1])
    with pytest.raises(HashMismatch):
        make_hub().download(f"hf:{REPO}/unet/model.safetensors", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_in_repo_is_a_clear_404(make_hub, repo, tmp_path):
    with pytest.raises(HubNotFound, match="no file 'unet/other.safetensors'"):
        make_hub().download(f"hf:{REPO}/unet/other.safetensors", tmp_path)


def test_429_on_the_api_is_retried_by_huggingface_hub(make_hub, repo, hf_server):
    # huggingface_hub's http_backoff waits Retry-After + 1 s, so keep Retry-After at 0 here.
    hf_server.behaviour.status_queue[f"/api/models/{REPO}/tree/main"] = [
        (429, {"Retry-After": "0"}, {"error": "rate limited"})]
    assert len(make_hub().hf.list_files(REPO)) == 2
    assert len(hf_server.requests_to(f"/api/models/{REPO}/tree/main")) == 2


def test_forbidden_repository_names_hf_token(make_hub, repo, hf_server):
    hf_server.behaviour.status_queue[f"/api/models/{REPO}/tree/main"] = [
        (403, {}, {"error": "Access to this model is restricted"})]
    with pytest.raises(HubAuthError, match="HF_TOKEN") as info:
        make_hub().hf.list_files(REPO)
    assert HF_TOKEN not in str(info.value)


def test_huggingface_hub_does_not_write_to_the_user_cache(make_hub, repo, tmp_path):
    from huggingface_hub import constants

    cache = constants.HF_HOME
    before = sorted(os.walk(cache)) if os.path.isdir(cache) else None
    hub = make_hub()
    hub.search("hf", "tiny")
    hub.download(f"hf:{REPO}/unet/model.safetensors", tmp_path)
    after = sorted(os.walk(cache)) if os.path.isdir(cache) else None
    assert before == after
