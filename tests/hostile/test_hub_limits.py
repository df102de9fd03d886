"""Hostile downloads against the hub's limits and file rules (issue 15: C1 in the core and the
CLI, resource limits, sidecar stems, pasted tokens, hostile hub answers, `kubik hub` errors).

Servers are real HTTP servers on 127.0.0.1 (opted in explicitly, as a LAN mirror would be).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "hub"))
from hub_stand_ins import StandIn, civitai_version, sha256_hex  # noqa: E402

from kubik_core.cli import main  # noqa: E402
from kubik_core.hub.config import HubConfig  # noqa: E402
from kubik_core.hub.errors import FileConflict, HubError, SourceError, UnsafeFilename  # noqa: E402
from kubik_core.hub.filenames import MAX_NAME_BYTES, safe_filename  # noqa: E402
from kubik_core.hub.http import HubSession  # noqa: E402
from kubik_core.hub.netguard import ALLOW_PRIVATE_ENV, AddressPolicy  # noqa: E402
from kubik_core.hub.service import Hub  # noqa: E402
from kubik_core.hub.sources import parse_source, shown_source  # noqa: E402
from kubik_core.hub.targets import allowed_extensions, cli_extensions  # noqa: E402

DATA = os.urandom(50_000)
SHA = sha256_hex(DATA)
TOKEN = "pasted-SECRET-token-42"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server():
    with StandIn() as srv:
        srv.add_file("/files/model.safetensors", DATA)
        srv.add_file("/files/evil.py", b"import os; os.system('touch /tmp/pwned')\n")
        yield srv


def make_hub(server=None, **overrides) -> Hub:
    values = dict(cache_dir=None, connect_timeout_s=2.0, read_timeout_s=2.0, min_interval_s=0.0,
                  max_attempts=1, address_policy=AddressPolicy(allow_all_private=True))
    if server is not None:
        values["civitai_base"] = f"{server.base}/api/v1"
    values.update(overrides)
    config = HubConfig(**values)
    return Hub(config, HubSession(config, sleep=lambda s: None))


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ C1: model formats only
@pytest.mark.parametrize("listed, allowed", [
    ({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"},   # ComfyUI's
     (".bin", ".ckpt", ".pt", ".pt2", ".pth", ".safetensors", ".sft")),
    (set(), (".safetensors", ".sft", ".gguf")),                  # lists nothing: safe formats
    ({""}, (".safetensors", ".sft", ".gguf")),
    ({".safetensors"}, (".safetensors",)),                        # no .pth where not listed
    ({".yaml"}, ()),
    (["folder"], ()),
    ({".py", ".safetensors"}, (".safetensors",)),                 # never code
    ({".SafeTensors", ".GGUF"}, (".gguf", ".safetensors")),
])
def test_the_extension_allow_list(listed, allowed):
    assert allowed_extensions(listed) == allowed


@pytest.mark.parametrize("file_name", ["evil.py", "x.pkl", "run.sh", "model.safetensors.py",
                                       "model", "a.yaml"])
def test_code_and_unknown_types_are_never_written(server, tmp_path, file_name):
    with pytest.raises(UnsafeFilename) as info:
        make_hub().download(f"{server.base}/files/evil.py", tmp_path, filename=file_name)
    assert str(info.value) == (
        f"file name {file_name!r}: this model folder takes only .safetensors, .sft, .gguf, .ckpt, "
        ".pt, .pt2, .pth, .bin, .onnx files; pass a file name with one of these extensions")
    assert server.seen == [] and files_in(tmp_path) == []


def test_a_url_naming_a_python_file_is_refused_after_resolving_and_writes_nothing(server, tmp_path):
    with pytest.raises(UnsafeFilename, match=r"^file name 'evil\.py': this model folder takes only "
                                             r"\.safetensors$|^file name 'evil\.py': this model "
                                             r"folder takes only \.safetensors files"):
        make_hub().download(f"{server.base}/files/evil.py", tmp_path,
                            allowed_extensions=(".safetensors", ".py"))
    assert server.seen == [] and files_in(tmp_path) == []


def test_pickle_formats_only_where_the_folder_lists_them(server, tmp_path):
    server.add_file("/files/model.pth", DATA)
    with pytest.raises(UnsafeFilename, match="takes only .safetensors files"):
        make_hub().download(f"{server.base}/files/model.pth", tmp_path,
                            allowed_extensions=allowed_extensions({".safetensors"}))
    record = make_hub().download(f"{server.base}/files/model.pth", tmp_path, expected_sha256=SHA,
                                 allowed_extensions=allowed_extensions({".pth", ".safetensors"}))
    assert record["file_name"] == "model.pth"


@pytest.mark.parametrize("kind, message", [
    ("custom_nodes", "--kind 'custom_nodes': not a ComfyUI model folder; choose one of loras, "),
    ("configs", "--kind 'configs': not a ComfyUI model folder; choose one of loras, "),
])
def test_cli_kind_must_be_a_model_folder(kind, message):
    with pytest.raises(ValueError) as info:
        cli_extensions(kind)
    assert str(info.value).startswith(message)


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBIK_HUB_CONFIG", str(tmp_path / "no-config.json"))
    monkeypatch.setenv("KUBIK_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "127.0.0.1")
    for name in ("CIVITAI_API_TOKEN", "CIVITAI_TOKEN", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_cli_refuses_a_python_file_name_and_a_code_kind(capsys, cli_env, server, tmp_path):
    dest = tmp_path / "custom_nodes"
    status, out, err = run(capsys, "hub", "download", f"{server.base}/files/evil.py", "--dest",
                           str(dest), "--kind", "custom_nodes")
    assert status == 2 and err.startswith("kubik hub: error: --kind 'custom_nodes': not a ComfyUI "
                                          "model folder; choose one of loras, checkpoints")
    status, out, err = run(capsys, "hub", "download", f"{server.base}/files/evil.py", "--dest",
                           str(dest))
    assert status == 2
    assert err.strip() == ("kubik hub: error: file name 'evil.py': this model folder takes only "
                           ".safetensors, .sft, .gguf, .ckpt, .pt, .pt2, .pth, .bin, .onnx files; "
                           "pass a file name with one of these extensions")
    status, out, err = run(capsys, "hub", "download", f"{server.base}/files/model.safetensors",
                           "--dest", str(dest), "--name", "x.py", "--kind", "loras")
    assert status == 2 and "file name 'x.py': this model folder takes only .bin, .ckpt" in err
    assert not dest.exists() and server.seen == []


# ------------------------------------------------------------------ CLI --dest and --sha256
def test_cli_dest_on_a_file_is_one_clear_line(capsys, cli_env, server, tmp_path):
    (tmp_path / "a_file").write_text("x")
    for dest, message in (
            (tmp_path / "a_file", f"--dest {tmp_path / 'a_file'}: is a file, not a folder; give "
                                  "the folder to download into"),
            (tmp_path / "a_file" / "sub", f"--dest {tmp_path / 'a_file' / 'sub'}: cannot be "
                                          f"created, {tmp_path / 'a_file'} is a file; give "
                                          "another folder")):
        status, out, err = run(capsys, "hub", "download", f"{server.base}/files/model.safetensors",
                               "--dest", str(dest))
        assert (status, out, err) == (2, "", f"kubik hub: error: {message}\n")
    assert server.seen == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_cli_dest_in_a_read_only_folder_is_one_clear_line(capsys, cli_env, server, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status, out, err = run(capsys, "hub", "download", f"{server.base}/files/model.safetensors",
                               "--dest", str(locked / "loras"))
    finally:
        locked.chmod(0o700)
    assert (status, err) == (2, f"kubik hub: error: --dest {locked / 'loras'}: not writable "
                                "(permission denied); give a folder you can write to\n")


def test_cli_wrong_sha256_with_the_right_named_file_present(capsys, cli_env, server, tmp_path):
    present = b"an older model with the same name"
    (tmp_path / "model.safetensors").write_bytes(present)
    wrong = "ab" * 32
    status, out, err = run(capsys, "hub", "download", f"{server.base}/files/model.safetensors",
                           "--dest", str(tmp_path), "--sha256", wrong)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert err.strip() == (f"kubik hub: error: model.safetensors is already in {tmp_path}, but it "
                           f"is not the file asked for: it has SHA-256 {sha256_hex(present)}, the "
                           f"file asked for has {wrong}; nothing was downloaded or overwritten: "
                           "check the expected hash, or rename or delete the present file")
    assert (tmp_path / "model.safetensors").read_bytes() == present
    assert server.seen == []


# ------------------------------------------------------------------ resource limits
def test_a_file_over_the_size_limit_is_refused_from_its_length(server, tmp_path):
    url = f"{server.base}/files/model.safetensors"
    with pytest.raises(HubError) as info:
        make_hub(max_download_bytes=10_000).download(url, tmp_path)
    assert str(info.value) == (f"{url}: one download may write at most 10000 bytes "
                               "(KUBIK_HUB_MAX_DOWNLOAD_GB) and the file is 50000 bytes; the "
                               "partial file was deleted")
    assert files_in(tmp_path) == []


def test_a_file_without_length_is_stopped_at_the_size_limit(server, tmp_path):
    server.add_file("/files/endless.safetensors", DATA * 40)
    server.behaviour.no_length.add("/files/endless.safetensors")
    url = f"{server.base}/files/endless.safetensors"
    with pytest.raises(HubError, match=r"one download may write at most 1\.0 MiB "
                                       r"\(KUBIK_HUB_MAX_DOWNLOAD_GB\) and the file is larger than "
                                       r"that; the partial file was deleted"):
        make_hub(max_download_bytes=2**20).download(url, tmp_path)
    assert files_in(tmp_path) == []


def test_a_size_listed_by_the_hub_over_the_limit_is_refused_before_downloading(server, tmp_path):
    version = civitai_version(7, 70, "huge.safetensors", DATA,
                              f"{server.base}/files/model.safetensors")
    version["files"][0]["sizeKB"] = 200 * 2**20    # 200 GiB
    server.json["/api/v1/model-versions/7"] = version
    with pytest.raises(HubError) as info:
        make_hub(server).download("civitai:7", tmp_path)
    assert str(info.value) == ("huge.safetensors: the hub lists it at 200.00 GiB, more than the "
                               "100.00 GiB one download may write (KUBIK_HUB_MAX_DOWNLOAD_GB)")
    assert server.requests_to("/files/") == []


def test_a_download_the_disk_cannot_hold_is_refused_before_writing(server, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(HubError, match=r"^model\.safetensors: not enough free space: 50000 bytes more "
                                       r"are needed, .* are free and .* must stay free; free some "
                                       r"space and run the download again$"):
        make_hub(min_free_bytes=free + 2**30).download(f"{server.base}/files/model.safetensors",
                                                       tmp_path)
    assert files_in(tmp_path) == []


def test_a_download_past_its_deadline_stops_and_says_how_to_resume(server, tmp_path):
    server.behaviour.delay_s["/files/model.safetensors"] = 0.5
    url = f"{server.base}/files/model.safetensors"
    with pytest.raises(HubError) as info:
        make_hub(download_deadline_s=0.2).download(url, tmp_path)
    assert str(info.value) == (f"{url}: the download took longer than 0.2 s "
                               "(KUBIK_HUB_DOWNLOAD_HOURS); run it again to resume from "
                               "model.safetensors.part")
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("name, variable, message", [
    ("-5", "KUBIK_HUB_MAX_DOWNLOAD_GB", "KUBIK_HUB_MAX_DOWNLOAD_GB: '-5' is not a positive number"),
    ("inf", "KUBIK_HUB_DOWNLOAD_HOURS", "KUBIK_HUB_DOWNLOAD_HOURS: 'inf' is not a positive number"),
    ("1e999", "KUBIK_HUB_DOWNLOAD_HOURS",
     "KUBIK_HUB_DOWNLOAD_HOURS: '1e999' is not a positive number"),
    ("lots", "KUBIK_HUB_MAX_DOWNLOAD_GB",
     "KUBIK_HUB_MAX_DOWNLOAD_GB: 'lots' is not a positive number"),
])
def test_bad_limit_settings_are_named(name, variable, message):
    with pytest.raises(ValueError) as info:
        HubConfig.from_env({variable: name, "KUBIK_HUB_CONFIG": "/nonexistent"})
    assert str(info.value) == message


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", ["a" * 1_000_000 + ".safetensors", "é" * 500_000 + ".safetensors",
                                  "€" * 300_000, "x." + "y" * 100_000])
def test_huge_file_names_are_truncated_in_one_pass(name):
    safe = safe_filename(name)
    assert 0 < len(safe.encode("utf-8")) <= MAX_NAME_BYTES
    if name.endswith(".safetensors"):
        assert safe.endswith(".safetensors")


# ------------------------------------------------------------------ sidecars keyed by stem
def test_a_stem_used_by_another_model_file_is_refused(server, tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"the user's own checkpoint")
    with pytest.raises(FileConflict) as info:
        make_hub().download(f"{server.base}/files/model.safetensors", tmp_path)
    assert str(info.value) == ("file name 'model.safetensors': the model folder already has "
                               "model.ckpt, and both would share the sidecars model.metadata.json "
                               "and model.civitai.info; pass another file name")
    assert server.seen == [] and files_in(tmp_path) == ["model.ckpt"]
    record = make_hub().download(f"{server.base}/files/model.safetensors", tmp_path,
                                 filename="model_v2.safetensors")
    assert record["file_name"] == "model_v2.safetensors"


# ------------------------------------------------------------------ pasted tokens
@pytest.mark.parametrize("source, shown", [
    (f"https://civitai.com/api/download/models/5?token={TOKEN}",
     "https://civitai.com/api/download/models/5?token=***"),
    (f"https://h.example/m.safetensors?type=Model&api_key={TOKEN}&x=1",
     "https://h.example/m.safetensors?type=Model&api_key=***&x=1"),
    (f"https://s3.example/m.safetensors?X-Amz-Signature={TOKEN}",
     "https://s3.example/m.safetensors?X-Amz-Signature=***"),
])
def test_pasted_credentials_are_hidden_from_what_is_shown(source, shown):
    assert shown_source(source) == (shown, True)


def test_a_refused_source_does_not_repeat_its_token():
    with pytest.raises(SourceError) as info:
        parse_source(f"ftp://files.example/m.safetensors?token={TOKEN}", HubConfig(cache_dir=None))
    assert str(info.value) == ("source 'ftp://files.example/m.safetensors?token=***': not a "
                               "civitai:, hf: or http(s):// source")


def test_a_pasted_token_never_reaches_the_sidecars(server, tmp_path):
    make_hub().download(f"{server.base}/files/model.safetensors?token={TOKEN}", tmp_path)
    for path in tmp_path.iterdir():
        if path.suffix != ".safetensors":
            assert TOKEN not in path.read_text()


# ------------------------------------------------------------------ hostile hub answers
@pytest.mark.parametrize("body, message", [
    (b"[" * 5000 + b"]" * 5000, "JSON is nested 5000 levels deep (limit 64)"),
    (b'{"id": 1e999}', "number 1e999 is out of range (not a finite float)"),
    (b'{"id": NaN}', "NaN is not a JSON number"),
    (b"<html>", "not valid JSON"),
])
def test_hostile_json_from_the_hub_is_a_clear_error(server, tmp_path, body, message):
    server.add_file("/api/v1/model-versions/9", body, "application/json")
    with pytest.raises(HubError) as info:
        make_hub(server).download("civitai:9", tmp_path)
    assert str(info.value).startswith(f"{server.base}/api/v1/model-versions/9: the server did not "
                                      f"answer usable JSON ({message}")


@pytest.mark.parametrize("version, message", [
    ({"id": 9, "files": {"name": "x"}}, "CivitAI version 9: lists no files to download"),
    ({"id": 9, "files": [{"name": ["x"], "hashes": [1], "sizeKB": "1e999", "downloadUrl": 5}]},
     "CivitAI version 9: its file has no download URL"),
    ({"id": 9, "files": [{"name": "../../x.py", "downloadUrl": "http://127.0.0.1:9/x.py"}]},
     "file name 'x.py': this model folder takes only"),
])
def test_hostile_version_shapes_are_clear_errors(server, tmp_path, version, message):
    server.json["/api/v1/model-versions/9"] = version
    with pytest.raises(HubError) as info:
        make_hub(server).download("civitai:9", tmp_path)
    assert str(info.value).startswith(message)
    assert files_in(tmp_path) == []


def test_a_hostile_sidecar_does_not_break_a_download(server, tmp_path):
    (tmp_path / "model.metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    record = make_hub().download(f"{server.base}/files/model.safetensors", tmp_path,
                                 expected_sha256=SHA)
    assert record["status"] == "downloaded"
    assert json.loads((tmp_path / "model.metadata.json").read_text())["sha256"] == SHA


@pytest.mark.parametrize("source, message", [
    ("civitai:" + "9" * 5000, f"source {('civitai:' + '9' * 72)!r}: civitai: takes a numeric model "
                              "version id (the modelVersionId in a CivitAI page URL)"),
    ("http://[::1", "source 'http://[::1': not a civitai:, hf: or http(s):// source"),
    ("http://h.example:99999/x.safetensors",
     "source 'http://h.example:99999/x.safetensors': not a civitai:, hf: or http(s):// source"),
    ("https://civitai.com/models/" + "1" * 50,
     f"source {('https://civitai.com/models/' + '1' * 50)!r}: a CivitAI URL without a model or "
     "version id"),
])
def test_hostile_sources_are_clear_errors(source, message):
    with pytest.raises(SourceError) as info:
        parse_source(source, HubConfig(cache_dir=None))
    assert str(info.value) == message
