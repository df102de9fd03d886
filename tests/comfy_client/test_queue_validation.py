"""`kubik queue` checks every value against the real server's /object_info before it sends
anything: one line naming the node and input, exit status 2, nothing queued."""
from __future__ import annotations

import pytest
from queue_stand_ins import WORKFLOW

from kubik_core.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CASES = [
    (["--set", "Sampler.steps=0"], "--set Sampler.steps (node 5, KSampler): 0 is below the minimum 1"),
    (["--set", "5.cfg=abc"], "--set 5.cfg (node 5, KSampler): 'abc' is not a number"),
    (["--set", "5.seed=1.5"], "--set 5.seed (node 5, KSampler): '1.5' is not an integer"),
    (["--set", "5.sampler_name=fastest"], "--set 5.sampler_name (node 5, KSampler): 'fastest' is not one of "
                                          "the server's choices ('euler', "),
    (["--set", "Load Checkpoint.ckpt_name=other.safetensors"],
     "(node 1, CheckpointLoaderSimple): 'other.safetensors' is not one of the server's choices ('tiny.safetensors')"),
    (["--set", "5.model=x"], "--set 5.model (node 5, KSampler) is a MODEL input fed by a link; only widget values"),
    (["--set", "5.nope=1"], "--set 5.nope (node 5, KSampler): the node has no input 'nope' (its widget inputs: seed, "),
    (["--set", "Refiner.steps=3"], "no node has the id, title or type 'Refiner' (ids: 1, 2, 3, 4, 5, 6, 7; titles: "),
    (["--set", "CLIPTextEncode.text=x"], "2 nodes are 'CLIPTextEncode' nodes (ids 2, 3); use the node id or a title"),
    (["--sweep", "5.seed=1,2,1"], "the list repeats a value; use --repeat to run a value again"),
    (["--sweep", "5.seed=1,2", "--sweep", "Sampler.seed=3"], "this input is swept twice"),
    (["--sweep", "5.steps=1,2", "--sweep", "5.seed=1,2", "--repeat", "2"], "would queue the same prompt"),
]


@pytest.mark.parametrize("extra, message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_values_are_refused_before_anything_is_sent(comfy_servers, tmp_path, capsys, extra, message):
    server = comfy_servers["B"]
    before = server.get("/history?max_items=10000")
    status = main(["queue", str(WORKFLOW), "--server", server.url, "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert server.get("/history?max_items=10000") == before and server.get("/queue")["queue_pending"] == []
    assert not (tmp_path / "queue-logs").exists()


def test_a_node_type_the_server_lacks_is_named(comfy_servers, tmp_path, capsys):
    workflow = tmp_path / "wf.json"
    workflow.write_text(WORKFLOW.read_text().replace('"SaveImage"', '"SaveImageSomewhere"'))
    status = main(["queue", str(workflow), "--server", comfy_servers["B"].url, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 2
    assert "node 7 is a 'SaveImageSomewhere', which the server does not have" in err
