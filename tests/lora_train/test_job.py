"""What a server checks before it trains for a request (kubik_core.lora_train.job), and the
child-process protocol (kubik_core.lora_train.runner) that needs no model: the command line it
builds parses back into the same settings, and a child that fails gives its one error line."""
from __future__ import annotations

import json
import os
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubik_core.lora_train import job
from kubik_core.lora_train.network import UNET_TARGETS_WIDE
from kubik_core.lora_train.runner import TrainingFailed, run_training, settings_arguments
from kubik_core.lora_train.train import TrainSettings


@pytest.mark.parametrize("typed, expected", [
    ("alice", ([], "alice")),
    ("alice.safetensors", ([], "alice")),
    ("characters/alice v2", (["characters"], "alice v2")),
    ("styles\\ink-wash_1.5", (["styles"], "ink-wash_1.5")),
])
def test_lora_names_are_plain_file_names_in_optional_subfolders(typed, expected):
    assert job.lora_name_parts(typed) == expected


@pytest.mark.parametrize("typed", ["", "  ", "../alice", "/etc/alice", "a/../b", ".hidden", "alice.",
                                   "con", "a\x00b", "x" * 101, "a/b/c/d/e", "ali:ce", "a//b"])
def test_other_lora_names_are_refused_naming_the_input(typed):
    with pytest.raises(ValueError, match=r"^lora_name: .* is not a usable LoRA name; use letters"):
        job.lora_name_parts(typed)


def test_data_folders_stay_inside_the_allowed_roots(tmp_path):
    inputs, extra, outside = tmp_path / "input", tmp_path / "datasets", tmp_path / "private"
    for folder in (inputs / "alice", extra / "bob", outside):
        folder.mkdir(parents=True)
    (inputs / "escape").symlink_to(outside)
    roots = [str(inputs), str(extra)]
    assert job.resolve_inside("alice", roots, "dataset_folder", "hint") == (inputs / "alice").resolve()
    assert job.resolve_inside(str(extra / "bob"), roots, "dataset_folder", "hint") == (extra / "bob").resolve()
    for typed in ("../private", str(outside), "escape"):
        with pytest.raises(ValueError, match=r"^dataset_folder: .* is outside the folders training data may "
                                             r"come from; hint$"):
            job.resolve_inside(typed, roots, "dataset_folder", "hint")
    with pytest.raises(ValueError, match=r"^dataset_folder: 'carol' does not exist; hint$"):
        job.resolve_inside("carol", roots, "dataset_folder", "hint")
    with pytest.raises(ValueError, match=r"^dataset_folder: empty; hint$"):
        job.resolve_inside(" ", roots, "dataset_folder", "hint")


def test_an_existing_lora_is_kept_continued_or_started_over_only_as_asked(tmp_path):
    files = ["kbk.safetensors", "kbk.resume", "kbk.metadata.json", "kbk_loss.png"]
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ValueError, match=r"^lora_name: kbk.safetensors already exists in the loras folder; "
                                         r"choose another name, or set existing_lora to"):
        job.prepare_output(tmp_path, "kbk", "keep")
    job.prepare_output(tmp_path, "kbk", "continue training")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)          # nothing deleted
    (tmp_path / "kbk.resume").unlink()
    with pytest.raises(ValueError, match=r"^existing_lora: kbk.safetensors has no saved run"):
        job.prepare_output(tmp_path, "kbk", "continue training")
    (tmp_path / "kbk_samples").mkdir()
    (tmp_path / "kbk_samples" / "step_000100_0.png").write_bytes(b"x")
    job.prepare_output(tmp_path, "kbk", "start over")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kbk.resume").write_bytes(b"x")                 # an unfinished run: "keep" continues it
    job.prepare_output(tmp_path, "kbk", "keep")
    assert (tmp_path / "kbk.resume").exists()


def test_a_subfolder_that_links_out_of_the_loras_folder_is_refused(tmp_path):
    (tmp_path / "loras").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "loras" / "out").symlink_to(tmp_path / "elsewhere")
    assert job.output_folder(str(tmp_path / "loras"), ["new"]) == (tmp_path / "loras" / "new").resolve()
    with pytest.raises(ValueError, match="^lora_name: its subfolder leads out of the loras folder"):
        job.output_folder(str(tmp_path / "loras"), ["out"])


def test_redact_replaces_server_paths_longest_first():
    line = "/srv/comfy/input/alice/b.png: not a readable image; /srv/comfy/input is shared"
    assert job.redact(line, {"/srv/comfy/input": "<input>", "/srv/comfy/input/alice": "alice"}) == \
        "alice/b.png: not a readable image; <input> is shared"


def test_the_child_command_line_parses_back_into_the_same_settings():
    from kubik_core.cli import build_parser
    from kubik_core.lora_train.cli import settings_from_args

    settings = TrainSettings(
        data="/d", base="/b.safetensors", output="/o", name="kbk", trigger="-kbk style, red", caption_model="/blip",
        write_captions=True, resolution=768,
        max_upscale=1.5, repeats=3, batch_size=2, steps=77, lr=3e-4, text_encoder_lr=1e-5, rank=8, alpha=4.5,
        conv_rank=4, conv_alpha=2.0, ema_decay=0.99,
        unet_targets=UNET_TARGETS_WIDE, train_text_encoder=True, schedule="constant", warmup=5, grad_accum=2,
        precision="bf16", gradient_checkpointing=False, noise_offset=0.05, min_snr_gamma=0.0,
        caption_dropout=0.1, shuffle_tags=True, keep_tokens=2, seed=9, cache="disk", cache_dir="/c",
        save_every=10, device="cpu", tokenizer="/t", optimizer="adamw", progress=False, key_style="diffusers",
        sample_every=50, sample_prompts=("kbk style, smiling", "--weird prompt"), sample_steps=12, sample_cfg=4.5)
    parsed = build_parser("lora").parse_args(["lora", "train", *settings_arguments(settings)])
    assert asdict(settings_from_args(parsed)) == asdict(settings)
    defaults = TrainSettings(data="d", base="b", output="o", name="n")
    parsed = build_parser("lora").parse_args(["lora", "train", *settings_arguments(defaults)])
    assert asdict(settings_from_args(parsed)) == asdict(defaults)


@pytest.mark.timeout(120)
def test_a_failing_child_gives_its_last_error_line(tmp_path):
    # With a --resolution the pictures are checked before the base model (which is missing too).
    settings = TrainSettings(data=str(tmp_path / "missing"), base=str(tmp_path / "base.safetensors"),
                             output=str(tmp_path / "out"), name="kbk", resolution=1024, device="cpu", progress=False)
    events = []
    with pytest.raises(TrainingFailed) as failure:
        run_training(settings, events.append, lambda: False, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert str(failure.value) == f"{tmp_path / 'missing'}: no such folder or manifest; pass the folder of training pictures"
    assert events == [{"event": "stage", "stage": "loading"}]
    assert not (tmp_path / "out" / "kbk.safetensors").exists()


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), st.builds(lambda v: json.dumps(v), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=20))), max_size=10))
def test_fuzz_the_child_output_reader_passes_only_event_objects(lines):
    """Whatever the child prints (its log, broken JSON, deep or odd values), the reader never
    fails, passes on only objects with a string "event", and ends with its end marker."""
    import io
    import queue

    from kubik_core.lora_train import runner

    events: queue.Queue = queue.Queue()
    runner._read_events(io.StringIO("\n".join(line.replace("\n", " ") for line in lines) + "\n"), events)
    received = []
    while True:
        item = events.get_nowait()
        if item is runner._EOF:
            break
        received.append(item)
    assert events.empty()
    assert all(isinstance(e, dict) and isinstance(e.get("event"), str) for e in received)
    expected = 0
    for line in lines:
        try:
            value = json.loads(line.replace("\n", " ").strip())
        except ValueError:
            continue
        expected += isinstance(value, dict) and isinstance(value.get("event"), str)
    assert len(received) == expected
