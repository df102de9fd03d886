"""`kubik queue` and run_jobs against real ComfyUI servers: a sweep over two servers, resume, a
rejected job, a server killed mid-run, a stalled websocket behind an HTTPS proxy with a token.

Each test reads the run's JSONL log and the files on disk, and compares them with what the
servers hold (their /history, their output folders)."""
from __future__ import annotations

import copy
import json

import pytest
from queue_stand_ins import WORKFLOW, ComfyProxy

from kubik_core.cli import main
from kubik_core.comfy_client import PoolSettings, expand_jobs, load_workflow, run_jobs, to_api
from kubik_testing.pack import REPO
from kubik_testing.tls import self_signed_certificate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def queue(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["queue", str(WORKFLOW), *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def log_records(out, newest_only: bool = False) -> list[dict]:
    files = sorted((out / "queue-logs").glob("*.jsonl"))
    files = files[-1:] if newest_only else files
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def events(records, name: str) -> list[dict]:
    return [r for r in records if r["event"] == name]


def test_ui_workflows_convert_to_their_api_twins(comfy_servers):
    """The editor's files in workflows/ give back exactly their API twins, seeds' "control after
    generate" values included, with the node definitions the real server reports."""
    info = comfy_servers["A"].get("/object_info")
    ui_files = sorted((REPO / "workflows").glob("*.json"))
    assert ui_files
    for path in ui_files:
        twin = json.loads((REPO / "workflows" / "api" / path.name).read_text())
        assert to_api(load_workflow(path), info) == twin, path.name


def test_an_editor_file_is_queued_as_its_api_twin(comfy_servers, tmp_path, capsys):
    """The UI-format template runs through `kubik queue` (converted with the server's
    /object_info); the server records the prompt we derived, values set by title included."""
    a = comfy_servers["A"]
    out = tmp_path / "out"
    capsys.readouterr()
    status = main(["queue", str(REPO / "workflows" / "Kubik Prompt Plan.json"), "--server", a.url, "--out", str(out),
                   "--sweep", "Kubik Prompt Analyzer.seed=5,6"])
    stdout, stderr = capsys.readouterr()
    assert status == 0, stderr
    twin = json.loads((REPO / "workflows" / "api" / "Kubik Prompt Plan.json").read_text())
    done = events(log_records(out), "done")
    assert len(done) == 2
    for record in done:
        sent = a.get(f"/history/{record['prompt_id']}")[record["prompt_id"]]["prompt"][2]
        expected = copy.deepcopy(twin)
        expected["1"]["inputs"]["seed"] = record["inputs"]["1.seed"]
        assert sent == expected


def test_sweep_over_two_servers_downloads_every_output_once(comfy_servers, tmp_path, capsys):
    a, b = comfy_servers["A"], comfy_servers["B"]
    out = tmp_path / "out"
    seeds = [100 * i for i in range(1, 11)]
    status, stdout, stderr = queue(capsys, "--server", a.url, "--server", b.url, "--out", out,
                                   "--sweep", "Sampler.seed=" + ",".join(map(str, seeds)), "--repeat", 2,
                                   "--set", "Positive.text=a blue bird")
    assert status == 0, stderr
    assert "20 done, 0 finished before (skipped), 0 failed" in stdout
    records = log_records(out)
    submitted, done = events(records, "submitted"), events(records, "done")
    assert len(done) == 20 and len({r["key"] for r in done}) == 20
    assert len(submitted) == 20 and not events(records, "resent")   # nothing sent twice
    assert {r["server"] for r in done} == {a.url, b.url}
    assert sorted(r["inputs"]["5.seed"] for r in done) == sorted(seeds + [s + 1 for s in seeds])
    assert all(r["inputs"]["2.text"] == "a blue bird" for r in done)
    # Every output once, and each is the file its server saved.
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files == sorted(f for r in done for f in r["outputs"]) and len(files) == 20
    for record in done:
        server = a if record["server"] == a.url else b
        (name,) = record["outputs"]
        saved = name.split("_7_", 1)[1]
        assert (out / name).read_bytes() == (server.output_dir / saved).read_bytes()
    # Each server holds, finished, exactly the prompts it was sent.
    for server in (a, b):
        history = server.get("/history?max_items=10000")
        sent = {r["prompt_id"] for r in submitted if r["server"] == server.url}
        assert sent and sent <= set(history)
        assert all(history[pid]["status"]["status_str"] == "success" for pid in sent)


def test_a_rerun_resumes_and_skips_finished_jobs(comfy_servers, tmp_path, capsys):
    a = comfy_servers["A"]
    out = tmp_path / "out"
    status, _, stderr = queue(capsys, "--server", a.url, "--out", out, "--sweep", "Sampler.seed=11,12")
    assert status == 0, stderr
    status, stdout, stderr = queue(capsys, "--server", a.url, "--out", out, "--sweep", "Sampler.seed=11,12,13")
    assert status == 0, stderr
    assert "1 done, 2 finished before (skipped), 0 failed" in stdout
    second = log_records(out, newest_only=True)
    assert [r["inputs"]["5.seed"] for r in events(second, "submitted")] == [13]
    # A finished job whose file has gone runs again; the others stay skipped.
    (gone,) = [r for r in events(log_records(out), "done") if r["inputs"]["5.seed"] == 11]
    (out / gone["outputs"][0]).unlink()
    status, stdout, _ = queue(capsys, "--server", a.url, "--out", out, "--sweep", "Sampler.seed=11,12,13")
    assert status == 0 and "1 done, 2 finished before (skipped)" in stdout
    third = log_records(out, newest_only=True)
    assert [r["inputs"]["5.seed"] for r in events(third, "submitted")] == [11]
    assert (out / events(third, "done")[0]["outputs"][0]).is_file()


def test_a_job_sent_by_a_stopped_run_is_looked_up_not_sent_again(comfy_servers, tmp_path, capsys):
    """A run that died after sending a prompt left a ``submitted`` line and no end: the next run
    finds the prompt on its server by id, downloads its output, and sends nothing."""
    a = comfy_servers["A"]
    out = tmp_path / "out"
    (job,) = expand_jobs(json.loads(WORKFLOW.read_text()), a.get("/object_info"), sweeps=["5.seed=51"])
    status, answer = a.post("/prompt", {"prompt": job.prompt, "client_id": "stopped-run", "prompt_id": "stopped-1"})
    assert status == 200
    (out / "queue-logs").mkdir(parents=True)
    (out / "queue-logs" / "20000101-000000-000000-aaaaaa.jsonl").write_text(json.dumps(
        {"event": "submitted", "job": job.name, "key": job.key, "server": a.url, "prompt_id": "stopped-1",
         "inputs": job.values}) + "\n")
    status, stdout, stderr = queue(capsys, "--server", a.url, "--out", out, "--sweep", "Sampler.seed=51")
    assert status == 0, stderr
    new = log_records(out, newest_only=True)
    assert events(new, "submitted") == []
    (done,) = events(new, "done")
    assert done["prompt_id"] == "stopped-1" and (out / done["outputs"][0]).is_file()


def test_a_rejected_job_is_reported_and_tried_once_per_server(comfy_servers, tmp_path):
    a, b = comfy_servers["A"], comfy_servers["B"]
    info = a.get("/object_info")
    api = json.loads(WORKFLOW.read_text())
    missing = copy.deepcopy(api)
    missing["1"]["inputs"]["ckpt_name"] = "missing_model.safetensors"
    jobs = expand_jobs(api, info, sweeps=["5.seed=21"]) + expand_jobs(missing, info, sweeps=["5.seed=22"])
    lines = []
    report = run_jobs(jobs, [a.url, b.url], tmp_path, echo=lines.append, progress=True)   # bars on stderr
    good, bad = report.results
    assert good.status == "done" and good.outputs
    assert bad.status == "failed"
    assert "rejected by every server" in bad.error and "missing_model.safetensors" in bad.error
    records = log_records(tmp_path)
    rejected = events(records, "rejected")
    assert sorted(r["server"] for r in rejected) == sorted([a.url, b.url])   # once each, no more
    assert len([r for r in events(records, "submitted") if r["key"] == bad.job.key]) == 2
    assert any(line.startswith(f"failed {bad.job.name}: rejected by every server") for line in lines)


def test_a_server_killed_mid_run_has_its_jobs_resent_and_none_lost(comfy_servers, tmp_path):
    a, c = comfy_servers["A"], comfy_servers["C"]
    info = a.get("/object_info")
    jobs = expand_jobs(json.loads(WORKFLOW.read_text()), info,
                       sweeps=["5.seed=" + ",".join(str(s) for s in range(300, 308))])
    killed = []

    def kill_after_first_output(event, fields):
        if event == "done" and fields["server"] == c.url and not killed:
            c.process.kill()   # with its second prompt still queued or running
            killed.append(fields["job"])

    settings = PoolSettings(max_in_flight=2, poll_interval=0.5, down_after=2.0, heartbeat=2.0)
    report = run_jobs(jobs, [c.url, a.url], tmp_path, settings=settings, on_event=kill_after_first_output)
    assert killed, "server C finished no job before A finished them all"
    assert [r.status for r in report.results] == ["done"] * len(jobs)
    records = log_records(tmp_path)
    done = events(records, "done")
    assert sorted(r["key"] for r in done) == sorted(j.key for j in jobs)   # each job once
    assert [r["server"] for r in events(records, "server_down")] == [c.url]
    sent_to_c = {r["job"] for r in events(records, "submitted") if r["server"] == c.url}
    done_on_c = {r["job"] for r in done if r["server"] == c.url}
    unfinished = sent_to_c - done_on_c
    assert unfinished, "no job was left on C when it died"
    assert unfinished <= {r["job"] for r in events(records, "resent")}
    assert all(r["server"] == a.url for r in done if r["job"] in unfinished)
    files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert files == sorted(f for r in done for f in r["outputs"]) and len(files) == len(jobs)


def test_a_stalled_socket_is_recovered_by_polling_through_https_with_a_token(
        comfy_servers, tmp_path, capsys, monkeypatch):
    """The proxy's websocket accepts and never speaks: every job's end is found by polling
    /queue and /history. The token reaches the proxy with every request and nothing else."""
    cert, key = self_signed_certificate(tmp_path, "localhost", "127.0.0.1")
    token = "kq-test-token-" + "7" * 24
    proxy = ComfyProxy(comfy_servers["A"].url, cert, key, token).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        out = tmp_path / "out"
        status, stdout, stderr = queue(capsys, "--server", proxy.url, "--out", out, "--sweep", "Sampler.seed=41,42")
        assert status == 2 and "HTTP 401" in stderr and "KUBIK_COMFY_TOKEN" in stderr

        monkeypatch.setenv("KUBIK_COMFY_TOKEN", token)
        status, stdout, stderr = queue(capsys, "--server", proxy.url, "--out", out, "--sweep", "Sampler.seed=41,42",
                                       "--stall-timeout", 1)
        assert status == 0, stderr
        assert "2 done" in stdout
        assert proxy.stalled_sockets >= 1
        authorized = [path for path, headers in proxy.requests if headers.get("Authorization") == f"Bearer {token}"]
        assert "/ws" in authorized and "/prompt" in authorized and "/view" in authorized
        logs = "".join(p.read_text() for p in (out / "queue-logs").glob("*.jsonl"))
        for text in (stdout, stderr, logs):
            assert token not in text
        assert len([p for p in out.iterdir() if p.is_file()]) == 2
    finally:
        proxy.stop()
