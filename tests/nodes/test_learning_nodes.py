"""Kubik Save Image, Kubik Feedback and `kubik insights`, end to end on a real store and PNGs."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from kubik_core.cli import main
from kubik_core.learning import LearningStore
from kubik_testing.store_backends import file_permissions_apply

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(tmp_path / "learning.sqlite3"))
    monkeypatch.setenv("KUBIK_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path


def _core(pack, module):
    return importlib.import_module(f"{pack.__name__}.kubik_core.{module}")


def _save(run_node, pack, **extra):
    analysis = _core(pack, "prompting").analyze_prompt("analog film photo of an old fisherman, golden hour")
    plan = _core(pack, "params").optimize(analysis, "sdxl", mode="ASSISTED", overrides={"cfg": 4.5})
    stack = _core(pack, "loras").LoraStack([_core(pack, "loras").StackItem(
        "xl/film_photo_xl.safetensors", 0.7, 0.6, path="/home/someone/loras/xl/film_photo_xl.safetensors", autov2="0123456789", sha256="01" * 32, suggested=True,
        triggers=["analog film photo"])])
    images = torch.rand(2, 64, 48, 3)
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 7}}}
    workflow = {"workflow": {"nodes": [{"id": 3, "type": "KSampler"}], "links": []}}
    inputs = dict(images=images, filename_prefix="kubik/test", record=True, analysis=analysis, plan=plan,
                  lora_stack=stack, positive=analysis.cleaned, negative="blurry", seed=7,
                  model_name="sd_xl_base_1.0.safetensors", prompt=graph, extra_pnginfo=workflow)
    inputs.update(extra)
    return run_node("KubikSaveImage", **inputs), graph, workflow


def test_save_image_writes_comfyui_and_a1111_metadata_and_records(pack, run_node, env):
    result, graph, workflow = _save(run_node, pack)
    files = result["ui"]["images"]
    assert [f["filename"] for f in files] == ["test_00001_.png", "test_00002_.png"]
    assert files[0]["subfolder"] == "kubik" and files[0]["type"] == "output"
    png = Image.open(env / "output" / "kubik" / "test_00001_.png")
    text = png.text
    assert json.loads(text["prompt"]) == graph                       # as ComfyUI's SaveImage writes it
    assert json.loads(text["workflow"]) == workflow["workflow"]
    params = text["parameters"].splitlines()
    assert params[0].endswith("<lora:film_photo_xl:0.7>")
    assert params[1] == "Negative prompt: blurry"
    assert 'Lora hashes: "film_photo_xl: 0123456789"' in params[2]
    assert "CFG scale: 4.5" in params[2] and "Seed: 7" in params[2] and "Model: sd_xl_base_1.0" in params[2]
    kubik = json.loads(text["kubik"])
    analysis = _core(pack, "prompting").analyze_prompt("analog film photo of an old fisherman, golden hour")
    assert kubik["analysis"]["style"] == analysis.style and kubik["plan"]["cfg"] == 4.5   # what was passed in
    assert "LoRAs\n- xl/film_photo_xl.safetensors" in kubik["explanation"]
    assert kubik["loras"][0]["autov2"] == "0123456789" and "path" not in kubik["loras"][0]
    assert png.size == (48, 64)

    gen_id = result["result"][0]
    store = LearningStore(env / "learning.sqlite3")
    assert store.count("generations") == 2 and store.count("generation_loras") == 2
    (edit,) = store.rows("edits")
    assert (edit["field"], json.loads(edit["final"])) == ("cfg", 4.5)
    row = next(r for r in store.rows("generations") if r["id"] == gen_id)
    assert row["family"] == "sdxl" and row["seed"] == "7" and row["edited"] == 1


def test_second_save_continues_the_counter_and_empty_batches_fail(pack, run_node, env):
    _save(run_node, pack)
    result, _, _ = _save(run_node, pack, record=False)
    assert result["ui"]["images"][0]["filename"] == "test_00003_.png" and result["result"] == ("",)
    with pytest.raises(ValueError, match="images: the batch is empty"):
        _save(run_node, pack, images=torch.zeros(0, 8, 8, 3))
    with pytest.raises(ValueError, match="filename_prefix"):
        _save(run_node, pack, filename_prefix="../../escape")


def test_save_image_takes_a_stack_as_an_api_prompt_passes_it(pack, run_node, env):
    """An API prompt may carry the stack's dict or JSON: it is checked, and a bad one names the input."""
    stack = {"items": [{"name": "xl/film_photo_xl.safetensors", "strength_model": 0.7,
                        "strength_clip": 0.6, "autov2": "0123456789"}]}
    result, _, _ = _save(run_node, pack, lora_stack=json.dumps(stack))
    png = Image.open(env / "output" / "kubik" / result["ui"]["images"][0]["filename"])
    assert png.text["parameters"].splitlines()[0].endswith("<lora:film_photo_xl:0.7>")
    stack["items"][0]["name"] = "../../escape.safetensors"
    with pytest.raises(ValueError, match="^lora_stack: "):
        _save(run_node, pack, lora_stack=stack)


def test_feedback_node_records_and_validates(pack, run_node, env):
    (result, _, _) = _save(run_node, pack)
    gen_id = result["result"][0]
    rate = lambda **kw: run_node("KubikFeedback", **{**dict(
        generation_id=gen_id, rating=5, quality=4, accuracy=0, aesthetic=5, tags="keeper, warm",
        comment="nice", saved=True, shared=False, regenerated=False), **kw})
    assert rate(rating=0)["result"][0].startswith("not rated yet")
    assert rate()["result"][0] == f"recorded 5/5 for generation {gen_id[:8]}"
    store = LearningStore(env / "learning.sqlite3")
    (row,) = store.rows("feedback")
    assert (row["rating"], row["accuracy"], json.loads(row["tags"])) == (5, None, ["keeper", "warm"])
    with pytest.raises(ValueError, match="generation_id: generation 'nope'"):
        rate(generation_id="nope")
    with pytest.raises(ValueError, match="generation_id: empty"):
        rate(generation_id="")


def test_corrupt_store_stops_the_feedback_node_and_keeps_the_file(pack, run_node, env):
    (env / "learning.sqlite3").write_bytes(b"garbage" * 50)
    with pytest.raises(Exception, match="not a SQLite database"):
        run_node("KubikFeedback", generation_id="x", rating=4, quality=0, accuracy=0, aesthetic=0, tags="",
                 comment="", saved=False, shared=False, regenerated=False)
    assert (env / "learning.sqlite3").read_bytes() == b"garbage" * 50


def test_insights_cli(pack, run_node, env, capsys):
    result, _, _ = _save(run_node, pack)
    store = LearningStore(env / "learning.sqlite3")
    for gen in store.rows("generations"):
        store.record_feedback(gen["id"], 5)
    assert main(["insights", "--store", str(env / "learning.sqlite3"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["generations"], data["feedback"], data["edits"]) == (2, 2, 1)
    assert data["parameter_acceptance"] == 0.0 and data["lora_suggestion_share"] == 1.0
    best = data["best_loras_by_style"]["photographic"][0]
    assert best["lora"] == "xl/film_photo_xl.safetensors" and best["ratings"] == 2
    assert data["families"]["sdxl"]["mean_rating"] == 5.0
    assert main(["insights", "--store", str(env / "learning.sqlite3")]) == 0
    assert "Best LoRAs for photographic:" in capsys.readouterr().out
    (env / "bad.sqlite3").write_bytes(b"x" * 100)
    assert main(["insights", "--store", str(env / "bad.sqlite3")]) == 2
    assert "not a SQLite database" in capsys.readouterr().err


def test_seed_and_model_come_from_the_graph_when_unlinked(pack, run_node, env):
    graph = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "juggernautXL_v9.safetensors"}},
             "4": {"class_type": "KubikApplyLoraStack", "inputs": {"model": ["1", 0]}},
             "9": {"class_type": "KSampler", "inputs": {"seed": 1234, "model": ["4", 0]}}}
    result, _, _ = _save(run_node, pack, seed=None, model_name=None, prompt=graph)
    text = Image.open(env / "output" / "kubik" / result["ui"]["images"][0]["filename"]).text["parameters"]
    assert "Seed: 1234" in text and "Model: juggernautXL_v9" in text


def test_insights_without_a_store(env, capsys):
    assert main(["insights", "--store", str(env / "missing.sqlite3")]) == 2
    assert "no learning store" in capsys.readouterr().err
    assert not (env / "missing.sqlite3").exists()


def _optimizer(run_node, analysis, mode="AUTO"):
    return run_node("KubikParameterOptimizer", family="sdxl", priority="balanced", aspect_ratio="auto",
                    mode=mode, device="cpu", steps=0, cfg=0.0, sampler_name="auto", scheduler="auto",
                    width=0, height=0, guidance=0.0, analysis=analysis)[0]


def test_the_optimizer_node_uses_three_consistent_edits(pack, run_node, env):
    analysis = _core(pack, "prompting").analyze_prompt("a quiet harbour at dawn, oil painting")
    before = _optimizer(run_node, analysis)
    assert not (env / "learning.sqlite3").exists()          # reading learned values creates nothing
    store = LearningStore(env / "learning.sqlite3")
    for _ in range(2):
        store.record_edits("sdxl", analysis.style, {"steps": before.steps}, {"steps": before.steps + 10})
    assert _optimizer(run_node, analysis).steps == before.steps
    store.record_edits("sdxl", analysis.style, {"steps": before.steps}, {"steps": before.steps + 10})
    after = _optimizer(run_node, analysis)
    assert after.steps == before.steps + 10
    assert any(d.field == "steps" and "learned" in d.reason for d in after.decisions)


def test_explain_node_shows_the_lora_stack(pack, run_node, env):
    loras = _core(pack, "loras")
    stack = loras.LoraStack([loras.StackItem("castle.safetensors", 0.8, 0.8)])
    text = run_node("KubikExplain", verbosity="standard", lora_stack=stack)["result"][0]
    assert text == "LoRAs\n- castle.safetensors at 0.8 (clip 0.8) - added by hand"


def test_preset_picker_follows_ratings(pack, run_node, env):
    pick = lambda **kw: run_node("KubikPresetPicker", **{**dict(family="sdxl", method="ucb1", seed=0), **kw})
    assert pick()[0] == "quality"                         # UCB1 tries untried presets in order
    store = LearningStore(env / "learning.sqlite3")
    for preset, rating in (("quality", 1), ("balanced", 5), ("speed", 2)) * 4:
        gen = store.record_generation(_core(pack, "learning").GenerationRecord(
            prompt="x", family="sdxl", style="anime", preset=preset))
        store.record_feedback(gen, rating)
    choice, summary = pick(method="thompson", seed=3)
    assert choice == "balanced" and "balanced 4 good / 0 bad" in summary
    analysis = _core(pack, "prompting").analyze_prompt("a photo of a red car")
    assert "(photographic)" in pick(analysis=analysis)[1]


def test_a_broken_store_never_loses_the_image(pack, run_node, env):
    (env / "learning.sqlite3").write_bytes(b"garbage" * 50)
    with pytest.raises(ValueError, match=r"record: the images were saved \(test_00001_.png, test_00002_.png\)"):
        _save(run_node, pack)
    assert (env / "output" / "kubik" / "test_00001_.png").exists()
    assert (env / "learning.sqlite3").read_bytes() == b"garbage" * 50


# ---------------------------------------------------------------- --disable-metadata
def test_disable_metadata_leaves_no_text_in_the_png_but_still_records(pack, run_node, env, monkeypatch):
    # ComfyUI's parsed command line, as comfy.cli_args holds it in a server started with
    # --disable-metadata (the real module is exercised by the next test, in a child process).
    monkeypatch.setitem(sys.modules, "comfy.cli_args",
                        types.SimpleNamespace(args=types.SimpleNamespace(disable_metadata=True)))
    result, _, _ = _save(run_node, pack)
    for image in result["ui"]["images"]:
        png = Image.open(env / "output" / "kubik" / image["filename"])
        assert png.text == {} and png.size == (48, 64)   # no workflow, prompt, parameters or kubik
    assert LearningStore(env / "learning.sqlite3").count("generations") == 2


_COMFY_CHILD = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    comfy_dir, tests_dir, out, flags = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
    sys.path[:0] = [comfy_dir, tests_dir]
    sys.argv = ["main.py", *flags]
    import comfy.options
    comfy.options.enable_args_parsing()       # as ComfyUI's main.py does: parse sys.argv
    import comfy.cli_args, folder_paths, torch
    folder_paths.set_output_directory(str(out / "output"))
    from kubik_testing.pack import load_pack
    from PIL import Image
    save = load_pack(out / "custom_nodes").NODE_CLASS_MAPPINGS["KubikSaveImage"]()
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 5}}}
    image = save.save(torch.rand(1, 8, 8, 3), "kubik/meta", False, prompt=graph,
                      extra_pnginfo={"workflow": {"nodes": []}})["ui"]["images"][0]
    png = Image.open(out / "output" / image["subfolder"] / image["filename"])
    print("KUBIK-RESULT " + json.dumps(sorted(png.text)))
''')


@pytest.mark.parametrize("flags, chunks", [([], ["kubik", "parameters", "prompt", "workflow"]),
                                           (["--disable-metadata"], [])])
@pytest.mark.timeout(300)
def test_comfyui_command_line_decides_the_png_text(tmp_path, flags, chunks):
    if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "comfy" / "cli_args.py").exists():
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to check --disable-metadata with its own "
                    "command-line parser")
    proc = subprocess.run([sys.executable, "-c", _COMFY_CHILD, COMFYUI_DIR, str(TESTS), str(tmp_path), *flags],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "KUBIK_LEARNING_URL": str(tmp_path / "unused.sqlite3")})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("KUBIK-RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    assert json.loads(line[len("KUBIK-RESULT "):]) == chunks


# ---------------------------------------------------------------- a store the nodes cannot write
def test_a_read_only_store_still_feeds_the_nodes_and_insights(pack, run_node, env, capsys):
    from kubik_core.learning import GenerationRecord

    path = env / "learning.sqlite3"
    store = LearningStore(path)      # written before this server starts; read-only when it does
    for preset in ("balanced", "balanced"):
        gen_id = store.record_generation(GenerationRecord(prompt="x", family="sdxl", preset=preset))
        store.record_feedback(gen_id, 5)
    before = store.rows("feedback")
    path.chmod(0o444)
    try:
        with file_permissions_apply():
            choice, summary = run_node("KubikPresetPicker", family="sdxl", method="ucb1", seed=0)
            assert choice == "quality" and "balanced 2 good / 0 bad" in summary
            with pytest.raises(ValueError) as caught:
                run_node("KubikFeedback", generation_id=gen_id, rating=4, quality=0, accuracy=0, aesthetic=0,
                         tags="", comment="", saved=False, shared=False, regenerated=False)
            assert str(caught.value) == (
                f"learning store {path}: the file is read-only, so nothing can be recorded (reading "
                "still works). To record, make it writable, or point KUBIK_LEARNING_URL at a store in "
                "a writable place.")
            assert main(["insights", "--store", str(path), "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["feedback"] == 2
    finally:
        path.chmod(0o644)
    assert LearningStore(path).rows("feedback") == before


def test_hostile_feedback_through_the_node_is_one_clear_line(pack, run_node, env):
    (result, _, _) = _save(run_node, pack)
    rate = lambda **kw: run_node("KubikFeedback", **{**dict(
        generation_id=result["result"][0], rating=4, quality=0, accuracy=0, aesthetic=0, tags="",
        comment="", saved=False, shared=False, regenerated=False), **kw})
    with pytest.raises(ValueError) as caught:
        rate(comment="n" * 50_000)
    assert str(caught.value) == "comment has 50,000 characters; the learning store keeps at most 10,000: shorten it"
    with pytest.raises(ValueError) as caught:
        rate(rating=7)
    assert str(caught.value) == "rating must be a whole number from 1 to 5, got 7"
    assert LearningStore(env / "learning.sqlite3").count("feedback") == 0


def test_a_batch_that_cannot_be_recorded_records_nothing_and_keeps_the_images(pack, run_node, env):
    with pytest.raises(ValueError) as caught:
        _save(run_node, pack, seed=2 ** 64)
    assert str(caught.value) == (
        "record: the images were saved (test_00001_.png, test_00002_.png) but not recorded: seed must be "
        "a whole number from -9223372036854775808 to 18446744073709551615, got 18446744073709551616. "
        "Turn 'record' off to save without the learning store.")
    assert (env / "output" / "kubik" / "test_00002_.png").exists()
    store = LearningStore(env / "learning.sqlite3")
    assert store.count("generations") == 0 and store.count("edits") == 0
