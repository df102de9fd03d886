"""Resumable, verified downloads against a local file server."""
from __future__ import annotations

import os
import threading

import pytest

from kubik_core.hub.download import download_file, sha256_file
from kubik_core.hub.errors import (FileConflict, HashMismatch, HubAuthError, HubNotFound,
                                   HubUnavailable, UnsafeFilename)

from hub_stand_ins import sha256_hex

DATA = os.urandom(3 * 1024 * 1024 + 123)   # a few chunks plus a ragged tail
SHA = sha256_hex(DATA)


@pytest.fixture
def served(cdn_server):
    cdn_server.add_file("/files/model.safetensors", DATA)
    return cdn_server, f"{cdn_server.base}/files/model.safetensors"


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def hash_workers():
    return [t for t in threading.enumerate() if t.name == "kubik-hub-sha256"]


def test_download_verifies_and_renames(make_hub, served, tmp_path):
    server, url = served
    seen_progress = []
    hub = make_hub()
    result = download_file(hub.session, url, tmp_path / "loras", "model.safetensors",
                           expected_sha256=SHA.upper(), progress=lambda d, t: seen_progress.append((d, t)))
    assert result.path.read_bytes() == DATA
    assert (result.sha256, result.size, result.status, result.attempts) == (SHA, len(DATA), "downloaded", 1)
    assert leftovers(tmp_path / "loras") == ["model.safetensors"]
    assert seen_progress[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen_progress] == sorted(d for d, _ in seen_progress)


def test_dropped_connection_is_resumed_with_range(make_hub, served, tmp_path, sleeps):
    server, url = served
    server.behaviour.drop_after["/files/model.safetensors"] = [1_500_000]
    result = download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert result.path.read_bytes() == DATA and result.attempts == 2
    gets = server.requests_to("/files/model.safetensors", "GET")
    assert "Range" not in gets[0].headers
    resumed_at = int(gets[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 1_500_000   # what reached the .part file before the drop
    assert len(sleeps) == 1    # one backoff pause between the two attempts


def test_part_file_from_an_earlier_run_is_resumed(make_hub, served, tmp_path):
    server, url = served
    (tmp_path / "model.safetensors.part").write_bytes(DATA[:2_000_000])
    result = download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert result.resumed_from == 2_000_000 and result.path.read_bytes() == DATA
    assert server.requests_to("/files/")[0].headers["Range"] == "bytes=2000000-"
    assert leftovers(tmp_path) == ["model.safetensors"]


def test_part_file_of_another_file_is_discarded_and_downloaded_again(make_hub, served, tmp_path):
    server, url = served
    (tmp_path / "model.safetensors.part").write_bytes(b"x" * 1_000_000)   # same name, other file
    result = download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert result.path.read_bytes() == DATA and result.resumed_from == 0
    ranges = [s.headers.get("Range") for s in server.requests_to("/files/")]
    assert ranges == ["bytes=1000000-", None]
    assert leftovers(tmp_path) == ["model.safetensors"]


def test_complete_part_file_is_finished_on_416(make_hub, served, tmp_path):
    server, url = served
    (tmp_path / "model.safetensors.part").write_bytes(DATA)
    result = download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert result.path.read_bytes() == DATA and result.resumed_from == len(DATA)


def test_server_ignoring_range_restarts_cleanly(make_hub, served, tmp_path):
    server, url = served
    server.behaviour.ignore_range = True
    (tmp_path / "model.safetensors.part").write_bytes(b"garbage" * 1000)
    result = download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert result.path.read_bytes() == DATA and result.resumed_from == 7000
    assert hash_workers() == []      # including the one replaced when the download restarted


def test_wrong_hash_deletes_partial_and_keeps_folder_clean(make_hub, served, tmp_path):
    server, url = served
    with pytest.raises(HashMismatch, match="partial file was deleted") as info:
        download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256="ab" * 32)
    assert SHA in str(info.value)
    assert leftovers(tmp_path) == []
    assert hash_workers() == []


def test_existing_identical_file_is_not_downloaded_again(make_hub, served, tmp_path):
    server, url = served
    (tmp_path / "model.safetensors").write_bytes(DATA)
    result = download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert result.status == "already_present"
    assert server.requests_to("/files/") == []


@pytest.mark.parametrize("expected", [SHA, None])
def test_existing_different_file_is_never_overwritten(make_hub, served, tmp_path, expected):
    server, url = served
    (tmp_path / "model.safetensors").write_bytes(b"my own model")
    with pytest.raises(FileConflict, match="nothing was (downloaded or )?overwritten"):
        download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256=expected)
    assert (tmp_path / "model.safetensors").read_bytes() == b"my own model"
    assert leftovers(tmp_path) == ["model.safetensors"]


def test_unverified_download_matching_existing_file_is_reported_present(make_hub, served, tmp_path):
    server, url = served
    (tmp_path / "model.safetensors").write_bytes(DATA)
    result = download_file(make_hub().session, url, tmp_path, "model.safetensors")
    assert result.status == "already_present" and result.sha256 == SHA
    assert leftovers(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("hostile, landed", [
    ("../../evil.safetensors", "evil.safetensors"),
    ("/etc/cron.d/evil.safetensors", "evil.safetensors"),
    ("..\\..\\win\\evil.safetensors", "evil.safetensors"),
    ("CON.safetensors", "_CON.safetensors"),
    ("bad:name?.safetensors", "bad_name_.safetensors"),
])
def test_hostile_file_names_stay_inside_the_folder(make_hub, served, tmp_path, hostile, landed):
    server, url = served
    folder = tmp_path / "models" / "loras"
    result = download_file(make_hub().session, url, folder, hostile, expected_sha256=SHA)
    assert result.path == (folder / landed).resolve()
    assert leftovers(tmp_path / "models") == ["loras"]


@pytest.mark.parametrize("hostile", ["..", "/", "../..", " . ", "model.safetensors.part"])
def test_unusable_file_names_are_refused(make_hub, served, tmp_path, hostile):
    server, url = served
    with pytest.raises(UnsafeFilename):
        download_file(make_hub().session, url, tmp_path, hostile)
    assert server.requests_to("/files/") == []


def test_missing_file_is_a_clear_404(make_hub, cdn_server, tmp_path):
    with pytest.raises(HubNotFound, match="not found"):
        download_file(make_hub().session, f"{cdn_server.base}/files/nope.safetensors", tmp_path,
                      "nope.safetensors")
    assert leftovers(tmp_path) == []


def test_slow_server_times_out_and_says_so(make_hub, served, tmp_path):
    server, url = served
    server.behaviour.delay_s["/files/model.safetensors"] = 1.0
    hub = make_hub(read_timeout_s=0.2, max_attempts=2)
    with pytest.raises(HubUnavailable, match="timed out after 2 attempts"):
        download_file(hub.session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert leftovers(tmp_path) == []


def test_cancel_keeps_the_part_file_for_a_later_resume(make_hub, served, tmp_path):
    server, url = served

    class Cancelled(Exception):
        pass

    calls = []

    def cancel_after_two_chunks():
        calls.append(1)
        if len(calls) > 2:
            raise Cancelled()

    hub = make_hub()
    with pytest.raises(Cancelled):
        download_file(hub.session, url, tmp_path, "model.safetensors", expected_sha256=SHA,
                      check_cancel=cancel_after_two_chunks)
    assert hash_workers() == []      # the hashing thread ended with the cancelled download
    kept = (tmp_path / "model.safetensors.part").stat().st_size
    assert 0 < kept < len(DATA)
    assert not (tmp_path / "model.safetensors").exists()
    result = download_file(hub.session, url, tmp_path, "model.safetensors", expected_sha256=SHA)
    assert result.resumed_from == kept
    assert sha256_file(result.path) == SHA
    assert leftovers(tmp_path) == ["model.safetensors"]


def test_bad_expected_hash_is_refused_before_any_request(make_hub, served, tmp_path):
    server, url = served
    with pytest.raises(ValueError, match="expected_sha256"):
        download_file(make_hub().session, url, tmp_path, "model.safetensors", expected_sha256="xyz")
    assert server.requests_to("/files/") == []


def test_a_login_page_instead_of_the_file_is_named_as_such(make_hub, cdn_server, tmp_path):
    cdn_server.add_file("/files/early-access", b"<html>Please log in</html>", "text/html; charset=utf-8")
    with pytest.raises(HubAuthError, match="web page instead of the file"):
        download_file(make_hub().session, f"{cdn_server.base}/files/early-access", tmp_path,
                      "model.safetensors")
    assert leftovers(tmp_path) == []
