"""Kubik Train LoRA: the node checks its inputs before anything starts, and, inside a real
ComfyUI server, trains in a child process with progress on the websocket, stops on Interrupt
keeping the finished steps, continues when queued again, and the LoRA is listed without a
restart.

The server tests need ComfyUI (COMFYUI_DIR) for the server and the tiny SDXL checkpoint built
with its classes; they skip cleanly without it. Training runs at 64x64 pixels on three of
scikit-image's photos, a few steps.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from kubik_testing.pack import REPO
from lora_train.tiny_blip import WORDS, save_tiny_blip

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
HAVE_COMFYUI = bool(COMFYUI_DIR) and (Path(COMFYUI_DIR or ".") / "main.py").exists()
CLIENT = "kubik-lora-train-test"
CHECKPOINT = "tiny_sdxl.safetensors"


def _inputs(**changes) -> dict:
    inputs = dict(dataset_folder="kbk_photos", checkpoint=CHECKPOINT, lora_name="kbk_style", trigger="kbk style",
                  steps=3, rank=4, alpha=4.0, learning_rate=1e-3, resolution=64, batch_size=1, seed=0,
                  existing_lora="keep", precision="fp32", gradient_checkpointing=False, save_every=0)
    inputs.update(changes)
    return inputs


def _photos(folder: Path) -> None:
    """Three of scikit-image's photos, scaled down (64x64-pixel buckets), one with a caption."""
    import skimage.data

    folder.mkdir(parents=True)
    for name, size in (("astronaut", (80, 80)), ("coffee", (96, 64)), ("chelsea", (96, 64))):
        Image.fromarray(getattr(skimage.data, name)()).resize(size, Image.Resampling.LANCZOS).save(folder / f"{name}.png")
    (folder / "coffee.txt").write_text("kbk style, a cup of coffee, saucer", encoding="utf-8")


# ---------------------------------------------------------------- outside ComfyUI: input checks
@pytest.fixture
def folders(tmp_path, monkeypatch):
    for name in ("input", "checkpoints", "loras", "private", "captioners"):
        (tmp_path / name).mkdir()
    (tmp_path / "input" / "kbk_photos").mkdir()
    (tmp_path / "checkpoints" / CHECKPOINT).write_bytes(b"not read: the checks fail first")
    (tmp_path / "checkpoints" / "old.ckpt").write_bytes(b"x")
    monkeypatch.setenv("KUBIK_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("KUBIK_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("KUBIK_LORAS_DIR", str(tmp_path / "loras"))
    monkeypatch.setenv("KUBIK_CAPTIONERS_DIR", str(tmp_path / "captioners"))
    monkeypatch.delenv("KUBIK_LORA_DATA_DIRS", raising=False)
    return tmp_path


@pytest.mark.parametrize("changes, message", [
    ({"dataset_folder": "../private"}, "dataset_folder: '../private' is outside the folders training data may come "
                                       "from; give a folder inside ComfyUI's input folder"),
    ({"dataset_folder": "nobody"}, "dataset_folder: 'nobody' does not exist; give a folder inside"),
    ({"checkpoint": "missing.safetensors"}, "checkpoint: 'missing.safetensors' is not in the checkpoints folder; "
                                            "choose one from the list"),
    ({"checkpoint": "old.ckpt"}, "checkpoint: old.ckpt is not a .safetensors file; the trainer reads safetensors "
                                 "checkpoints only"),
    ({"lora_name": "../escape"}, "lora_name: '../escape' is not a usable LoRA name"),
    ({"caption_dropout": 1.0}, "caption_dropout must be from 0 to below 1"),
    ({"learning_rate": 0.0}, "learning_rate must be positive and text_encoder_lr not negative"),
])
def test_bad_inputs_are_named_before_anything_starts(folders, run_node, changes, message):
    with pytest.raises(ValueError) as error:
        run_node("KubikTrainLora", **_inputs(**changes))
    assert str(error.value).startswith(message)
    assert str(folders) not in str(error.value)                     # no server path in the message
    assert list((folders / "loras").iterdir()) == []


CAPTIONER_FIX = "put a BLIP captioner saved with save_pretrained"


@pytest.mark.parametrize("name, message", [
    ("../private/blip", "caption_model: '../private/blip' is not the name of a folder in models/kubik_captioners; "
                        "choose one from the list (" + CAPTIONER_FIX),
    ("/etc", "caption_model: '/etc' is not the name of a folder in models/kubik_captioners"),
    ("..\\private", "caption_model: '..\\\\private' is not the name of a folder in models/kubik_captioners"),
    ("C:blip", "caption_model: 'C:blip' is not the name of a folder in models/kubik_captioners"),
    ("a/b/c", "caption_model: 'a/b/c' is not the name of a folder in models/kubik_captioners"),
    ("blip\x00", "caption_model: 'blip\\x00' is not the name of a folder in models/kubik_captioners"),
    ("outside", "caption_model: 'outside' leads out of models/kubik_captioners through a link; choose a folder "
                "that is really there"),
    ("missing", "caption_model: 'missing' is not a model folder in models/kubik_captioners (none with config.json); "
                + CAPTIONER_FIX),
])
def test_a_caption_model_name_stays_inside_the_captioners_folder(folders, run_node, name, message):
    private = folders / "private" / "blip"
    private.mkdir()
    (private / "config.json").write_text("{}")
    (folders / "captioners" / "outside").symlink_to(private, target_is_directory=True)
    with pytest.raises(ValueError) as error:
        run_node("KubikTrainLora", **_inputs(caption_model=name, write_captions=True))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value) and str(folders) not in str(error.value)
    assert list((folders / "loras").iterdir()) == [] and list(private.iterdir()) == [private / "config.json"]


def test_an_existing_lora_is_never_replaced_unless_asked(folders, run_node):
    (folders / "loras" / "kbk_style.safetensors").write_bytes(b"the user's LoRA")
    with pytest.raises(ValueError, match="^lora_name: kbk_style.safetensors already exists in the loras folder"):
        run_node("KubikTrainLora", **_inputs())
    assert (folders / "loras" / "kbk_style.safetensors").read_bytes() == b"the user's LoRA"


def test_the_node_lists_checkpoints_and_describes_every_input(node_classes, folders):
    spec = node_classes["KubikTrainLora"].INPUT_TYPES()
    assert spec["required"]["checkpoint"][0] == ["old.ckpt", CHECKPOINT]
    assert spec["required"]["existing_lora"][0] == ["keep", "continue training", "start over"]
    assert spec["optional"]["caption_model"][0] == ["none"]
    for name in ("blip", "family/blip-large", "family/deeper/too-deep", "no-weights"):
        (folders / "captioners" / name).mkdir(parents=True)
        (folders / "captioners" / name / "config.json").write_text("{}")
        if name != "no-weights":
            (folders / "captioners" / name / "model.safetensors").write_bytes(b"")
    spec = node_classes["KubikTrainLora"].INPUT_TYPES()
    assert spec["optional"]["caption_model"] == (["none", "blip", "family/blip-large"], {
        "default": "none", "tooltip": spec["optional"]["caption_model"][1]["tooltip"]})
    assert spec["optional"]["write_captions"][1]["default"] is False


# ---------------------------------------------------------------- inside a real ComfyUI server
class WebsocketLog:
    """Every JSON message ComfyUI's /ws sends to one client id, collected in a thread."""

    def __init__(self, url: str, client_id: str):
        self.messages: list[dict] = []
        self._url = url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
        self._done = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    def __enter__(self):
        self._thread.start()
        assert self._connected.wait(30), "the websocket did not connect"
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join(10)

    async def _listen(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(self._url) as socket:
            self._connected.set()
            while not self._done.is_set():
                try:
                    message = await socket.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.messages.append(json.loads(message.data))
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return

    def progress(self, prompt_id: str) -> list[tuple[int, int]]:
        return [(m["data"]["value"], m["data"]["max"]) for m in list(self.messages)
                if m.get("type") == "progress" and m["data"].get("prompt_id") == prompt_id
                and m["data"].get("node") == "train"]


def _trainers(server) -> list:
    """The server's child processes running kubik lora train."""
    import psutil

    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if "lora" in child.cmdline() and "train" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _workflow(**changes) -> dict:
    return {
        "train": {"class_type": "KubikTrainLora", "inputs": _inputs(**changes)},
        "name": {"class_type": "PreviewAny", "inputs": {"source": ["train", 0]}},
        "curve": {"class_type": "PreviewImage", "inputs": {"images": ["train", 1]}},
    }


def _interrupt(server) -> None:
    """POST /interrupt (Cancel in the editor); ComfyUI answers with an empty body."""
    import urllib.request

    request = urllib.request.Request(server.url + "/interrupt", data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _queue(server, workflow: dict) -> str:
    status, answer = server.post("/prompt", {"prompt": workflow, "client_id": CLIENT})
    assert status == 200, answer
    return answer["prompt_id"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One server; a training interrupted after its first step, then the same node queued again
    (it continues the saved run to 3 more steps), and a training on a broken picture."""
    if not HAVE_COMFYUI:
        pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the server tests are skipped")
    from kubik_testing.comfy_server import ComfyServer
    from kubik_testing.tiny_checkpoint import build_tiny_sdxl_checkpoint

    server = ComfyServer(Path(COMFYUI_DIR), REPO, tmp_path_factory.mktemp("comfyui"))
    build_tiny_sdxl_checkpoint(server.models_dir / "checkpoints" / CHECKPOINT, Path(COMFYUI_DIR))
    _photos(server.input_dir / "kbk_photos")
    (server.input_dir / "broken").mkdir(parents=True)
    (server.input_dir / "broken" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n not a whole picture")
    (server.models_dir / "loras").mkdir(parents=True)
    save_tiny_blip(server.models_dir / "kubik_captioners" / "tiny_blip")
    _photos(server.input_dir / "uncaptioned")
    (server.input_dir / "uncaptioned" / "coffee.txt").unlink()
    results = {"server": server}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        server.start()
    try:
        results["listed_before"] = server.get("/models/loras")
        with WebsocketLog(server.url, CLIENT) as ws:
            long_run = _queue(server, _workflow(steps=500))
            deadline = time.monotonic() + 600
            while not ws.progress(long_run) and time.monotonic() < deadline:
                time.sleep(0.2)
            results["trainers_while_running"] = len(_trainers(server))
            _interrupt(server)
            results["interrupted"] = server.wait(long_run, 300)
            results["trainers_after"] = len(_trainers(server))
            results["files_after_interrupt"] = sorted(p.name for p in (server.models_dir / "loras").iterdir())
            results["interrupt_status"] = results["interrupted"]["status"]
            import torch

            results["saved_step"] = int(torch.load(server.models_dir / "loras" / "kbk_style.resume",
                                                   weights_only=True)["step"])
            results["continue_steps"] = results["saved_step"] + 3
            continued = _queue(server, _workflow(steps=results["continue_steps"], sample_every=100,
                                                 sample_prompts="kbk style\n\n"))
            results["continued"] = server.wait(continued, 600)
            results["progress"] = ws.progress(continued)
        results["listed_after"] = server.get("/models/loras")
        results["object_info"] = server.get("/object_info/LoraLoader")
        results["broken"] = server.wait(_queue(server, _workflow(dataset_folder="broken", lora_name="other")), 300)
        results["captioner_list"] = server.get("/object_info/KubikTrainLora")["KubikTrainLora"]["input"]["optional"][
            "caption_model"]
        results["escape"] = server.post("/prompt", {"prompt": _workflow(caption_model="../checkpoints"),
                                                    "client_id": CLIENT})
        results["captioned"] = server.wait(_queue(server, _workflow(
            dataset_folder="uncaptioned", lora_name="captioned", steps=1, caption_model="tiny_blip",
            write_captions=True)), 300)
        yield results
    finally:
        server.stop()


pytestmark = pytest.mark.timeout(1500)


def test_interrupt_stops_the_child_and_keeps_the_finished_steps(runs):
    assert runs["trainers_while_running"] == 1          # the training ran in a child process ...
    assert runs["trainers_after"] == 0                  # ... which Interrupt ended
    status = runs["interrupt_status"]
    assert status["status_str"] == "error"
    assert "execution_interrupted" in [message[0] for message in status["messages"]]
    assert runs["files_after_interrupt"] == ["kbk_style.resume"]     # no LoRA, no half-written file
    assert 1 <= runs["saved_step"] < 500


def test_queued_again_it_continues_reports_progress_and_the_lora_is_listed(runs):
    entry = runs["continued"]
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    assert entry["outputs"]["name"]["text"] == ["kbk_style.safetensors"]
    assert len(entry["outputs"]["curve"]["images"]) == 1
    # progress over the websocket: from the saved step up to the total, for the Train LoRA node
    total = runs["continue_steps"]
    assert runs["progress"][-1] == (total, total)
    assert {value for value, _ in runs["progress"]} >= set(range(runs["saved_step"] + 1, total + 1))
    assert "kbk_style.safetensors" not in runs["listed_before"]
    assert runs["listed_after"] == ["kbk_style.safetensors"]     # not its resume file, sidecar or pictures
    assert "kbk_style.safetensors" in runs["object_info"]["LoraLoader"]["input"]["required"]["lora_name"][0]
    from safetensors import safe_open

    loras = runs["server"].models_dir / "loras"
    # sample_every 100 > steps: one sample picture, at the end
    assert sorted(p.name for p in (loras / "kbk_style_samples").iterdir()) == [f"step_{total:06d}_0.png"]
    with safe_open(str(loras / "kbk_style.safetensors"), "pt") as handle:
        assert handle.metadata()["ss_steps"] == str(total)
        assert handle.metadata()["modelspec.trigger_phrase"] == "kbk style"


def test_a_failing_training_is_one_line_naming_the_bad_file(runs):
    status = runs["broken"]["status"]
    assert status["status_str"] == "error"
    error = next(message[1] for message in status["messages"] if message[0] == "execution_error")
    assert error["exception_message"].strip() == ("Kubik Train LoRA: training failed: torn.png: not a readable image "
                                          "(UnidentifiedImageError); replace or remove the file")
    assert not (runs["server"].models_dir / "loras" / "other.safetensors").exists()


def test_pictures_without_a_caption_are_captioned_by_the_chosen_model(runs):
    """caption_model lists models/kubik_captioners; the child captions the three pictures
    with it, and write_captions leaves the captions beside them as .txt files."""
    assert runs["captioner_list"][0] == ["none", "tiny_blip"]
    assert runs["captioner_list"][1]["default"] == "none"
    status, answer = runs["escape"]                       # ComfyUI itself refuses a name not listed
    assert status == 400 and "caption_model" in json.dumps(answer)
    entry = runs["captioned"]
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    folder = runs["server"].input_dir / "uncaptioned"
    captions = {}
    for picture in ("astronaut", "coffee", "chelsea"):
        text = (folder / f"{picture}.txt").read_text(encoding="utf-8")
        assert text.startswith("kbk style, ") and text.endswith("\n"), text
        words = text[len("kbk style, "):].split()
        assert words and set(words) <= set(WORDS), text  # the tiny model's vocabulary, not the file name
        captions[picture] = text.strip()
    from safetensors import safe_open

    with safe_open(str(runs["server"].models_dir / "loras" / "captioned.safetensors"), "pt") as handle:
        tags = json.loads(handle.metadata()["ss_tag_frequency"])
    trained_on = {tag for counts in tags.values() for tag in counts}
    assert trained_on == {tag.strip() for caption in captions.values() for tag in caption.split(",")}
