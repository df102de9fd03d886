"""Textual-inversion embeddings: the scan, base architecture from tensor shapes, sidecars, the
proposals for the positive and negative prompt, the command line, and ComfyUI's own tokenizer
loading every token the recommender writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubik_core.cli import main
from kubik_core.loras.embeddings import recommend_embeddings, scan_embeddings
from kubik_core.params import ParamsError
from kubik_core.prompting import analyze_prompt
from kubik_testing.embedding_files import build_embedding_library, write_embedding

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return build_embedding_library(tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def entries(folder):
    return {e.name: e for e in scan_embeddings([folder]).entries}


def test_base_from_tensor_shapes_and_sidecars(entries):
    sd1, sdxl, pony, sd2 = (entries["EasyNegative.safetensors"], entries["negativeXL_D.safetensors"],
                            entries["pony/zPDXL3.safetensors"], entries["sd2/rev2-badprompt.safetensors"])
    assert (sd1.base, sd1.vectors, sd1.arch_source) == ("sd1", 8, "tensor shapes: 768-wide vectors (CLIP ViT-L)")
    assert (sdxl.base, sdxl.arch_source) == ("sdxl", "tensor shapes: clip_l 768 + clip_g 1280")
    assert (pony.base, pony.variant, pony.triggers) == ("sdxl", "pony", ["zPDXL3"])
    assert sd2.base == "sd2" and all(not e.problems for e in entries.values())
    assert entries["CharTurnerV2.safetensors"].triggers == ["charturnerv2"]


def test_negative_embeddings_are_told_by_name_title_or_tags(entries):
    assert {n for n, e in entries.items() if e.negative} == {
        "EasyNegative.safetensors", "badhandv4.safetensors", "negativeXL_D.safetensors",
        "unaestheticXLv31.safetensors", "pony/zPDXL3.safetensors", "sd2/rev2-badprompt.safetensors"}
    assert entries["badhandv4.safetensors"].negative_reason == "its name says 'badhandv4'"
    assert not entries["CharTurnerV2.safetensors"].negative


def test_sd15_negatives_and_a_named_positive(entries):
    analysis = analyze_prompt("charturnerv2, a knight in armor, character sheet")
    advice = recommend_embeddings(entries.values(), analysis, "sd15")
    assert advice.positive_text == "embedding:CharTurnerV2"
    assert advice.negative_text == "embedding:EasyNegative, embedding:badhandv4"  # most downloaded first
    assert "its trigger word" in advice.positive[0].reason
    skipped = {p.name: p.reason for p in advice.skipped}
    assert "made for SDXL" in skipped["negativeXL_D.safetensors"]
    assert "shape warning" in skipped["negativeXL_D.safetensors"]


def test_sdxl_pony_and_the_limit(entries):
    analysis = analyze_prompt("a castle on a hill at sunset, oil painting")
    sdxl = recommend_embeddings(entries.values(), analysis, "sdxl", max_negative=3)
    assert sdxl.negative_text == ("embedding:unaestheticXLv31, embedding:negativeXL_D, "
                                  "embedding:pony/zPDXL3")  # plain SDXL ones before Pony's
    pony = recommend_embeddings(entries.values(), analysis, "pony", max_negative=1)
    assert pony.negative_text == "embedding:pony/zPDXL3" and "made for pony" in pony.negative[0].reason
    assert any(p.reason == "negative embedding beyond the 1 proposed" for p in pony.skipped)
    assert pony.positive == []


def test_no_negatives_without_a_negative_pass_and_none_for_other_encoders(entries):
    turbo = recommend_embeddings(entries.values(), analyze_prompt("a cat"), "sdxl_turbo")
    assert turbo.negative == [] and "no negative pass" in turbo.notes[0]
    flux = recommend_embeddings(entries.values(), analyze_prompt("a cat"), "flux_dev")
    assert flux.negative == [] and flux.skipped == [] and "textual-inversion" in flux.notes[0]


def test_an_embedding_already_in_the_prompt_is_not_proposed_again(entries):
    analysis = analyze_prompt("charturnerv2, embedding:CharTurnerV2, a knight")
    advice = recommend_embeddings(entries.values(), analysis, "sd15")
    assert advice.positive == [] and ("CharTurnerV2.safetensors", "already in the prompt") in [
        (p.name, p.reason) for p in advice.skipped]


def test_tokens_keep_extensions_comfyui_would_not_add(tmp_path):
    write_embedding(tmp_path / "style.sft", "sd1")
    (tmp_path / "old.pt").write_bytes(b"\x80\x04N.")
    tokens = {e.name: e.token for e in scan_embeddings([tmp_path]).entries}
    assert tokens == {"style.sft": "embedding:style.sft", "old.pt": "embedding:old"}


def test_unknown_family_is_a_params_error(entries):
    with pytest.raises(ParamsError, match="^family: unknown family 'sdxxl'"):
        recommend_embeddings(entries.values(), None, "sdxxl")


def test_cli_lists_and_proposes(folder, capsys):
    assert main(["loras", "embeddings", str(folder), "--family", "sd15", "--prompt", "charturnerv2, a knight"]) == 0
    out = capsys.readouterr().out
    assert "embedding:EasyNegative\n  base sd1 [tensor shapes" in out
    assert "negative: embedding:EasyNegative, embedding:badhandv4" in out
    assert "positive: embedding:CharTurnerV2" in out and "7 embedding files" in out
    assert main(["loras", "embeddings", str(folder), "--family", "pony", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["advice"]["negative_text"].startswith("embedding:pony/zPDXL3")
    assert {f["token"] for f in data["files"]} >= {"embedding:negativeXL_D", "embedding:pony/zPDXL3"}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["loras", "embeddings", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["loras", "embeddings", str(tmp_path), "--family", "sd15", "--max-negative", "-1"]) == 2
    assert "--max-negative: give 0 or more" in capsys.readouterr().err


_CHILD = textwrap.dedent('''
    import json, sys
    sys.path[:0] = [sys.argv[1]]
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import torch
    import comfy.sd1_clip, comfy.sdxl_clip
    folder, texts = sys.argv[2], json.loads(sys.argv[3])
    tokenizers = {"sd15": comfy.sd1_clip.SD1Tokenizer(embedding_directory=folder),
                  "sdxl": comfy.sdxl_clip.SDXLTokenizer(embedding_directory=folder)}
    counts = {}
    for family, text in texts.items():
        out = tokenizers[family].tokenize_with_weights(text)
        counts[family] = {enc: [list(t[0].shape) for batch in v for t in batch if isinstance(t[0], torch.Tensor)]
                          for enc, v in out.items()}
    print(json.dumps(counts))
''')


@pytest.mark.skipif(not COMFYUI_DIR, reason="needs COMFYUI_DIR (ComfyUI's own tokenizer)")
@pytest.mark.timeout(120)
def test_comfyui_loads_every_proposed_token(folder, entries):
    sd15 = recommend_embeddings(entries.values(), analyze_prompt("charturnerv2, a knight"), "sd15")
    pony = recommend_embeddings(entries.values(), analyze_prompt("a knight"), "pony", max_negative=3)
    texts = {"sd15": f"{sd15.positive_text}, a knight, {sd15.negative_text}",
             "sdxl": f"{pony.negative_text}, lowres"}
    result = subprocess.run([sys.executable, "-c", _CHILD, COMFYUI_DIR, str(folder), json.dumps(texts)],
                            capture_output=True, text=True, timeout=110, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["sd15"]["l"] == [[768]] * (2 + 8 + 6)   # CharTurnerV2, EasyNegative, badhandv4
    assert counts["sdxl"]["l"] == [[768]] * (4 + 2 + 4) and counts["sdxl"]["g"] == [[1280]] * 10
