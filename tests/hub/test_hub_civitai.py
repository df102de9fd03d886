"""CivitAI client, civitai: downloads with sidecars, retries, tokens and enrich, against stand-ins."""
from __future__ import annotations

import io
import json
import os

import pytest
from PIL import Image

from kubik_core.hub.civitai import normalize_hash
from kubik_core.hub.errors import (HashMismatch, HubAuthError, HubNotFound, HubRateLimited,
                                   HubUnavailable)
from kubik_core.hub.sources import parse_source

from hub_stand_ins import CIVITAI_TOKEN, HF_TOKEN, civitai_model, civitai_version, sha256_hex

DATA = os.urandom(300_000)
SHA = sha256_hex(DATA)


def png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


SFW_PNG, NSFW_PNG = png((0, 128, 255)), png((255, 0, 0))


@pytest.fixture
def catalogue(civitai_server, cdn_server):
    """Model 123 with version 456 (a LoRA file served by the CDN after a redirect)."""
    cdn_server.add_file("/files/kbk_style.safetensors", DATA)
    cdn_server.add_file("/images/sfw.png", SFW_PNG, "image/png")
    cdn_server.add_file("/images/nsfw.png", NSFW_PNG, "image/png")
    download_url = f"{civitai_server.base}/api/download/models/456"
    civitai_server.redirects["/api/download/models/456"] = f"{cdn_server.base}/files/kbk_style.safetensors"
    images = [
        {"url": f"{cdn_server.base}/images/nsfw.png", "nsfwLevel": 8, "width": 8, "height": 8, "type": "image"},
        {"url": f"{cdn_server.base}/images/sfw.png", "nsfwLevel": 1, "width": 8, "height": 8, "type": "image"},
    ]
    version = civitai_version(456, 123, "kbk_style.safetensors", DATA, download_url, images=images)
    civitai_server.json["/api/v1/model-versions/456"] = version
    civitai_server.json[f"/api/v1/model-versions/by-hash/{SHA}"] = version
    civitai_server.json[f"/api/v1/model-versions/by-hash/{SHA[:10]}"] = version
    civitai_server.json["/api/v1/models/123"] = civitai_model(123, [version])
    return version


def written(folder):
    return {p.name: p for p in folder.iterdir()}


def test_download_by_version_id_writes_model_and_sidecars(make_hub, catalogue, civitai_server,
                                                          cdn_server, tmp_path):
    folder = tmp_path / "loras"
    record = make_hub().download("civitai:456", folder, kind="loras")
    assert record["status"] == "downloaded" and record["verified"] and record["sha256"] == SHA
    files = written(folder)
    assert sorted(files) == ["kbk_style.civitai.info", "kbk_style.metadata.json",
                             "kbk_style.preview.png", "kbk_style.safetensors"]
    assert files["kbk_style.safetensors"].read_bytes() == DATA
    assert json.loads(files["kbk_style.civitai.info"].read_text()) == catalogue
    assert files["kbk_style.preview.png"].read_bytes() == SFW_PNG   # the NSFW image was skipped
    meta = json.loads(files["kbk_style.metadata.json"].read_text())
    assert meta["sha256"] == SHA and meta["size"] == len(DATA)
    assert meta["file_name"] == "kbk_style" and meta["model_name"] == "Test model 123"
    assert meta["base_model"] == "SDXL 1.0" and meta["from_civitai"] is True
    assert meta["civitai"]["trainedWords"] == ["kbk style"]
    assert meta["preview_url"].endswith("/kbk_style.preview.png") and meta["preview_nsfw_level"] == 1
    assert meta["usage_tips"] == "{}" and meta["metadata_source"] == "civitai_api"
    assert meta["kubik_source"]["version_id"] == 456 and meta["kubik_source"]["source"] == "civitai"


def test_token_goes_to_civitai_only_never_to_the_cdn_or_into_files(make_hub, catalogue,
                                                                   civitai_server, cdn_server, tmp_path):
    make_hub().download("civitai:456", tmp_path, kind="loras")
    api = civitai_server.requests_to("/api/")
    assert api and all(s.headers.get("Authorization") == f"Bearer {CIVITAI_TOKEN}" for s in api)
    assert cdn_server.seen and all("Authorization" not in s.headers for s in cdn_server.seen)
    for path in tmp_path.iterdir():
        if not path.name.endswith((".safetensors", ".png")):
            text = path.read_text()
            assert CIVITAI_TOKEN not in text and HF_TOKEN not in text


def test_user_fields_in_metadata_json_survive(make_hub, catalogue, tmp_path):
    (tmp_path / "kbk_style.metadata.json").write_text(json.dumps(
        {"notes": "my notes", "favorite": True, "usage_tips": '{"strength": 0.7}', "x_custom": [1]}))
    make_hub().download("civitai:456", tmp_path, kind="loras")
    meta = json.loads((tmp_path / "kbk_style.metadata.json").read_text())
    assert meta["notes"] == "my notes" and meta["favorite"] is True and meta["x_custom"] == [1]
    assert meta["usage_tips"] == '{"strength": 0.7}' and meta["sha256"] == SHA


def test_file_not_matching_the_hubs_hash_leaves_nothing(make_hub, catalogue, cdn_server, tmp_path):
    cdn_server.add_file("/files/kbk_style.safetensors", DATA[:-1] + b"!")
    with pytest.raises(HashMismatch, match="partial file was deleted"):
        make_hub().download("civitai:456", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_expected_hash_that_contradicts_the_hub_stops_before_downloading(make_hub, catalogue,
                                                                          cdn_server, tmp_path):
    with pytest.raises(HashMismatch, match="differs from the hub"):
        make_hub().download("civitai:456", tmp_path, expected_sha256="0" * 64)
    assert cdn_server.seen == []


def test_unknown_version_is_a_clear_404(make_hub, catalogue, tmp_path):
    with pytest.raises(HubNotFound, match="model-versions/999: not found"):
        make_hub().download("civitai:999", tmp_path)


def test_401_names_the_token_variable_and_hides_the_token(make_hub, catalogue, civitai_server, tmp_path):
    civitai_server.behaviour.status_queue["/api/v1/model-versions/456"] = [
        (401, {}, {"error": f"Invalid API key {CIVITAI_TOKEN}"})]
    with pytest.raises(HubAuthError) as info:
        make_hub().download("civitai:456", tmp_path)
    assert "CIVITAI_API_TOKEN" in str(info.value) and CIVITAI_TOKEN not in str(info.value)
    assert "***" in str(info.value)


def test_429_retry_after_is_honoured(make_hub, catalogue, civitai_server, sleeps):
    civitai_server.behaviour.status_queue[f"/api/v1/model-versions/by-hash/{SHA}"] = [
        (429, {"Retry-After": "2"}, {"error": "slow down"})]
    version = make_hub().civitai.version_by_hash(SHA.upper())
    assert version["id"] == 456 and sleeps == [2.0]
    assert len(civitai_server.requests_to("/api/v1/model-versions/by-hash/")) == 2


def test_a_very_long_retry_after_fails_fast(make_hub, catalogue, civitai_server, sleeps):
    civitai_server.behaviour.status_queue["/api/v1/model-versions/456"] = [
        (429, {"Retry-After": "86400"}, {})]
    with pytest.raises(HubRateLimited, match="wait 86400 s"):
        make_hub().civitai.version(456)
    assert sleeps == []


def test_5xx_is_retried_with_backoff_then_gives_up(make_hub, catalogue, civitai_server, sleeps):
    civitai_server.behaviour.status_queue["/api/v1/model-versions/456"] = [(503, {}, {})] * 2
    assert make_hub().civitai.version(456)["id"] == 456
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9 / 2  # exponential, jittered
    civitai_server.behaviour.status_queue["/api/v1/model-versions/456"] = [(502, {}, {})] * 3
    with pytest.raises(HubUnavailable, match="server error 502 after 3 attempts"):
        make_hub(cache_dir=None).civitai.version(456)


def test_408_and_425_are_retried_like_the_image_fetcher_does(make_hub, catalogue, civitai_server, sleeps):
    civitai_server.behaviour.status_queue["/api/v1/model-versions/456"] = [(408, {}, {}), (425, {}, {})]
    assert make_hub().civitai.version(456)["id"] == 456
    assert len(sleeps) == 2
    civitai_server.behaviour.status_queue["/api/v1/model-versions/456"] = [(408, {}, {})] * 3
    with pytest.raises(HubUnavailable, match=r"/api/v1/model-versions/456: HTTP 408 after 3 attempts"):
        make_hub(cache_dir=None).civitai.version(456)


def test_responses_are_cached_on_disk_without_tokens(make_hub, catalogue, civitai_server, tmp_path):
    hub = make_hub()
    assert hub.civitai.version(456) == make_hub().civitai.version(456)
    assert len(civitai_server.requests_to("/api/v1/model-versions/456")) == 1
    for entry in hub.config.cache_dir.iterdir():
        assert CIVITAI_TOKEN not in entry.read_text()


def test_polite_gap_between_requests_to_one_host(make_hub, catalogue, sleeps):
    hub = make_hub(min_interval_s=5.0, cache_dir=None)
    hub.civitai.version(456)
    hub.civitai.version(456)
    assert len(sleeps) == 1 and 4.0 < sleeps[0] <= 5.0


def test_search_sends_filters_and_follows_cursors(make_hub, civitai_server, catalogue):
    pages = {None: ([civitai_model(1, [catalogue]), civitai_model(2, [catalogue])], "c2"),
             "c2": ([civitai_model(3, [catalogue])], None)}

    def models(path, query):
        if path != "/api/v1/models":
            return 404, {"error": "Model not found"}
        items, next_cursor = pages[(query.get("cursor") or [None])[0]]
        return 200, {"items": items, "metadata": {"nextCursor": next_cursor}}

    civitai_server.json_handlers["/api/v1/models"] = models
    found = make_hub().search("civitai", "kbk", limit=10, types="LORA", base_models="SDXL 1.0",
                              sort="Most Downloaded")
    assert [item["model_id"] for item in found] == [1, 2, 3]
    assert found[0]["source_string"] == "civitai:456" and found[0]["trained_words"] == ["kbk style"]
    first = civitai_server.requests_to("/api/v1/models")[0].query
    assert first["query"] == ["kbk"] and first["types"] == ["LORA"]
    assert first["baseModels"] == ["SDXL 1.0"] and first["sort"] == ["Most Downloaded"]


def test_info_by_hash_and_by_local_file(make_hub, catalogue, tmp_path):
    hub = make_hub()
    assert hub.info(SHA[:10].upper())["trained_words"] == ["kbk style"]
    local = tmp_path / "some.safetensors"
    local.write_bytes(DATA)
    summary = hub.info(str(local))
    assert summary["version_id"] == 456 and summary["sha256"] == SHA
    assert summary["files"][0]["sha256"] == SHA and summary["base_model"] == "SDXL 1.0"


@pytest.mark.parametrize("bad", ["xyz", "abc", "e3b0c44298", "12345678901"])
def test_bad_hashes_are_refused_without_a_request(bad):
    with pytest.raises(ValueError, match="hash"):
        normalize_hash(bad)


def test_enrich_writes_missing_sidecars_once(make_hub, catalogue, civitai_server, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "renamed.safetensors").write_bytes(DATA)
    (tmp_path / "mine.safetensors").write_bytes(b"a model CivitAI never saw")
    (tmp_path / "notes.txt").write_text("not a model")
    hub = make_hub()
    reports = {os.path.basename(r["file"]): r for r in hub.enrich(tmp_path, kind="loras")}
    assert set(reports) == {"renamed.safetensors", "mine.safetensors"}
    assert reports["renamed.safetensors"]["status"] == "written"
    assert reports["mine.safetensors"]["status"] == "not_found"
    assert json.loads((tmp_path / "sub" / "renamed.civitai.info").read_text()) == catalogue
    assert (tmp_path / "sub" / "renamed.preview.png").read_bytes() == SFW_PNG
    mine = json.loads((tmp_path / "mine.metadata.json").read_text())
    assert mine["from_civitai"] is False and mine["sha256"] == sha256_hex(b"a model CivitAI never saw")
    before = len(civitai_server.seen)
    again = hub.enrich(tmp_path)
    assert {r["status"] for r in again} == {"skipped"} and len(civitai_server.seen) == before


def test_civitai_page_urls_are_understood(make_hub, catalogue, civitai_server, tmp_path):
    hub = make_hub()
    assert parse_source(f"{civitai_server.base}/models/123?modelVersionId=456", hub.config).version_id == 456
    assert parse_source("https://civitai.com/api/download/models/77", hub.config).version_id == 77
    record = hub.download(f"{civitai_server.base}/models/123", tmp_path)
    assert record["file_name"] == "kbk_style.safetensors"


def test_hostile_file_name_from_the_api_lands_inside_the_folder(make_hub, catalogue, civitai_server, tmp_path):
    catalogue["files"][0]["name"] = "../../../etc/cron.d/evil.safetensors"
    folder = tmp_path / "models" / "loras"
    record = make_hub().download("civitai:456", folder, kind="loras")
    assert record["file_name"] == "evil.safetensors"
    assert sorted(p.name for p in folder.iterdir()) == [
        "evil.civitai.info", "evil.metadata.json", "evil.preview.png", "evil.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
