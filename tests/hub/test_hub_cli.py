"""``kubik hub ...`` end to end against the stand-ins (environment as a user would set it)."""
from __future__ import annotations

import json
import os

from kubik_core.cli import main

from hub_stand_ins import CIVITAI_TOKEN, ENV_DATA, ENV_SHA, civitai_model, hf_tree_entry, sha256_hex


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_download_json_record(capsys, hub_env, tmp_path):
    status, out, err = run(capsys, "hub", "download", "civitai:456", "--dest", str(tmp_path / "loras"),
                           "--kind", "loras", "--json")
    assert status == 0, err
    record = json.loads(out)
    assert record["status"] == "downloaded" and record["verified"] and record["sha256"] == ENV_SHA
    assert record["file_name"] == "kbk_style.safetensors" and record["source"] == "civitai"
    assert (tmp_path / "loras" / "kbk_style.safetensors").read_bytes() == ENV_DATA
    assert sorted(os.path.basename(p) for p in record["sidecars"]) == [
        "kbk_style.civitai.info", "kbk_style.metadata.json"]


def test_download_errors_are_one_line_without_token(capsys, hub_env, tmp_path):
    status, out, err = run(capsys, "hub", "download", "civitai:456", "--dest", str(tmp_path / "d"),
                           "--sha256", "1" * 64)
    assert status == 2
    assert err.startswith("kubik hub: error: ") and "differs from the hub" in err
    assert len(err.strip().splitlines()) == 1 and CIVITAI_TOKEN not in err
    assert not (tmp_path / "d").exists()


def test_plain_url_download_records_where_it_came_from_without_query(capsys, hub_env, cdn_server, tmp_path):
    cdn_server.add_file("/signed/file.safetensors", b"plain bytes")
    url = f"{cdn_server.base}/signed/file.safetensors?X-Signature=abc123secret"
    status, out, err = run(capsys, "hub", "download", url, "--dest", str(tmp_path), "--json")
    assert status == 0, err
    record = json.loads(out)
    assert record["verified"] is False and record["sha256"] == sha256_hex(b"plain bytes")
    meta = (tmp_path / "file.metadata.json").read_text()
    assert "abc123secret" not in meta
    assert json.loads(meta)["kubik_source"]["url"] == f"{cdn_server.base}/signed/file.safetensors"


def test_info_search_and_enrich(capsys, hub_env, tmp_path):
    version = hub_env.json["/api/v1/model-versions/456"]
    hub_env.json[f"/api/v1/model-versions/by-hash/{ENV_SHA}"] = version
    hub_env.json["/api/v1/models"] = {"items": [civitai_model(123, [version])], "metadata": {}}
    status, out, _ = run(capsys, "hub", "info", ENV_SHA, "--json")
    assert status == 0 and json.loads(out)["trained_words"] == ["kbk style"]
    status, out, _ = run(capsys, "hub", "search", "civitai", "kbk", "--type", "LORA")
    assert status == 0 and out.startswith("civitai:456")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.safetensors").write_bytes(ENV_DATA)
    status, out, _ = run(capsys, "hub", "enrich", str(tmp_path / "lib"), "--json")
    assert status == 0 and [r["status"] for r in json.loads(out)] == ["written"]
    status, out, _ = run(capsys, "hub", "enrich", str(tmp_path / "lib"))
    assert status == 0 and out.strip() == "1 skipped"


def test_unknown_hash_and_missing_folder_are_clear(capsys, hub_env, tmp_path):
    status, _, err = run(capsys, "hub", "info", "ab" * 32)
    assert status == 2 and "not found" in err
    status, _, err = run(capsys, "hub", "enrich", str(tmp_path / "nope"))
    assert status == 2 and "does not exist" in err


def test_hf_files_listing(capsys, hub_env, hf_server):
    hf_server.json["/api/models/org/repo/tree/main"] = [hf_tree_entry("w.safetensors", b"w" * 10)]
    status, out, err = run(capsys, "hub", "files", "org/repo", "--json")
    assert status == 0, err
    assert json.loads(out)[0]["sha256"] == sha256_hex(b"w" * 10)
