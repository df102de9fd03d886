"""The LoRA nodes as ComfyUI runs them (pack loaded from a renamed copy, no ComfyUI)."""
from __future__ import annotations

import importlib

import pytest

@pytest.fixture
def env(library_dir, tmp_path, monkeypatch):
    root = library_dir
    monkeypatch.setenv("KUBIK_LORAS_DIR", str(root))
    monkeypatch.setenv("KUBIK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KUBIK_LEARNING_URL", str(tmp_path / "learning.sqlite3"))
    return root


def _analysis(pack, text):
    return importlib.import_module(f"{pack.__name__}.kubik_core.prompting").analyze_prompt(text)


def _recommend(run_node, analysis, **overrides):
    inputs = dict(analysis=analysis, max_loras=3, priority="balanced", family="sdxl", content="safe",
                  blocklist="", weight_semantic=0.4, weight_keyword=0.3, weight_popularity=0.2,
                  weight_history=0.1)
    inputs.update(overrides)
    return run_node("KubikLoraRecommender", **inputs)


def test_recommender_node(pack, run_node, env):
    stack, triggers, reasons = _recommend(run_node, _analysis(pack, "analog film photo of a street"))
    assert [i.name for i in stack.items] == ["xl/film_photo_xl.safetensors"]
    assert stack.items[0].path == str(env / "xl" / "film_photo_xl.safetensors")
    assert triggers == "analog film photo"
    assert reasons.startswith("- xl/film_photo_xl.safetensors at 0.7: style (photo): trigger 'analog film photo' "
                              "in the prompt")


def test_recommender_node_bad_inputs(pack, run_node, env, monkeypatch):
    with pytest.raises(ValueError, match="analysis: connect"):
        _recommend(run_node, None)
    with pytest.raises(ValueError, match="weight_"):
        _recommend(run_node, _analysis(pack, "castle"), weight_semantic=0.0, weight_keyword=0.0,
                   weight_popularity=0.0, weight_history=0.0)
    with pytest.raises(ValueError, match="allow_other_variants: should be true or false, got 'yes'"):
        _recommend(run_node, _analysis(pack, "castle"), allow_other_variants="yes")
    monkeypatch.delenv("KUBIK_LORAS_DIR")
    with pytest.raises(ValueError, match="no LoRA folder"):
        _recommend(run_node, _analysis(pack, "castle"))


def test_manual_stack_and_apply_outside_comfyui(pack, run_node, env):
    stack, triggers = run_node("KubikLoraStack", lora_1="xl/castle_detail.safetensors", strength_model_1=2.0,
                               strength_clip_1=2.0, lora_2="xl/anime_lineart_xl.safetensors",
                               strength_model_2=2.0, strength_clip_2=1.0, lora_3="None",
                               strength_model_3=1.0, strength_clip_3=1.0)
    assert [i.name for i in stack.items] == ["xl/castle_detail.safetensors", "xl/anime_lineart_xl.safetensors"]
    assert abs(stack.total_strength() - 3.0) < 0.01 and stack.notes
    assert triggers == "gothic castle, towers"   # anime_lineart_xl has no trigger field: none
    with pytest.raises(ValueError, match="lora_1: 'missing.safetensors' is not in"):
        run_node("KubikLoraStack", lora_1="missing.safetensors", strength_model_1=1.0, strength_clip_1=1.0,
                 lora_2="None", strength_model_2=1.0, strength_clip_2=1.0, lora_3="None",
                 strength_model_3=1.0, strength_clip_3=1.0)
    with pytest.raises(RuntimeError, match="lora_stack: applying LoRAs needs ComfyUI"):
        run_node("KubikApplyLoraStack", model=object(), clip=object(), lora_stack=stack,
                 add_trigger_words=True, prompt="a castle")
    with pytest.raises(ValueError, match="lora_stack: expected a KUBIK_LORA_STACK"):
        run_node("KubikApplyLoraStack", model=object(), clip=object(), lora_stack=[("a", 1.0)],
                 add_trigger_words=True)


def test_apply_with_an_empty_stack_appends_nothing(pack, run_node, env):
    stack, _ = run_node("KubikLoraStack", lora_1="None", strength_model_1=1.0, strength_clip_1=1.0,
                        lora_2="None", strength_model_2=1.0, strength_clip_2=1.0, lora_3="None",
                        strength_model_3=1.0, strength_clip_3=1.0)
    model, clip = object(), object()
    assert run_node("KubikApplyLoraStack", model=model, clip=clip, lora_stack=stack,
                    add_trigger_words=True, prompt="a castle") == (model, clip, "a castle")


def test_is_changed_follows_the_library_and_the_ratings(pack, node_classes, env, tmp_path):
    from kubik_core.learning import GenerationRecord, LearningStore
    from kubik_core.loras.synthetic import write_lora

    cls = node_classes["KubikLoraRecommender"]
    first = cls.IS_CHANGED(analysis=None)
    assert cls.IS_CHANGED(analysis=None) == first
    write_lora(env / "xl" / "new_one.safetensors", "kohya", "sdxl")
    second = cls.IS_CHANGED(analysis=None)
    assert second != first
    store = LearningStore(tmp_path / "learning.sqlite3")
    store.record_feedback(store.record_generation(GenerationRecord(prompt="x")), 4)
    assert cls.IS_CHANGED(analysis=None) != second


def test_unreadable_store_with_history_weight(pack, run_node, env, tmp_path):
    (tmp_path / "learning.sqlite3").write_bytes(b"not a database" * 20)
    with pytest.raises(ValueError, match="weight_history: the learning store cannot be read"):
        _recommend(run_node, _analysis(pack, "analog film photo"))
    stack, _, _ = _recommend(run_node, _analysis(pack, "analog film photo"), weight_history=0.0)
    assert len(stack) == 1


class _Patcher:
    """A ComfyUI MODEL stand-in: a ModelPatcher whose .model is comfy.model_base.SDXL-shaped."""

    def __init__(self):
        base = type("BaseModel", (), {})
        self.model = type("SDXL", (base,), {})()
        self.model.model_config = type("SDXL", (), {"unet_config": {"context_dim": 2048}})()
        self.model.model_type = type("ModelType", (), {"name": "EPS"})()


def test_family_from_the_model_and_its_checkpoint_name(pack, run_node, env):
    """Pony checkpoints load as SDXL; the graph's checkpoint name tells the recommender."""
    analysis = _analysis(pack, "cartoon style, a dog")
    graph = lambda ckpt: {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
                          "3": {"class_type": "KubikLoraRecommender", "inputs": {"model": ["1", 0]}}}
    on_sdxl = _recommend(run_node, analysis, family="auto", model=_Patcher(), prompt=graph("sd_xl_base_1.0.safetensors"),
                         unique_id="3")[2]
    on_pony = _recommend(run_node, analysis, family="auto", model=_Patcher(),
                         prompt=graph("ponyDiffusionV6XL_v6.safetensors"), unique_id="3")[2]
    assert "xl/pony_cartoon.safetensors at" not in on_sdxl and "other SDXL variant" in on_sdxl
    assert "xl/pony_cartoon.safetensors at" in on_pony and "made for pony" not in on_pony
    allowed = _recommend(run_node, analysis, family="auto", model=_Patcher(), unique_id="3",
                         prompt=graph("sd_xl_base_1.0.safetensors"), allow_other_variants=True)[2]
    assert "xl/pony_cartoon.safetensors at" in allowed and "made for pony, the model is sdxl" in allowed


class _Clip:
    """A CLIP stand-in with ComfyUI's tokenize / encode_from_tokens(return_pooled=True) calls:
    a bag-of-words pooled vector, counting each encode."""

    WORDS = ("film", "photo", "castle", "anime", "cartoon", "street")

    def __init__(self):
        self.encoded = 0

    def tokenize(self, text):
        return text.lower()

    def encode_from_tokens(self, tokens, return_pooled=False):
        import torch

        self.encoded += 1
        return None, torch.tensor([[tokens.count(w) + 0.01 for w in self.WORDS]])


def test_clip_embeddings_are_used_and_cached(pack, run_node, env):
    clip = _Clip()
    analysis = _analysis(pack, "analog film photo of a street")
    stack, _, reasons = _recommend(run_node, analysis, clip=clip)
    assert stack.items[0].name == "xl/film_photo_xl.safetensors"
    first = clip.encoded
    assert first >= 2                                   # the prompt and the candidates
    _recommend(run_node, analysis, clip=clip)
    assert clip.encoded == first                        # everything cached
    _recommend(run_node, _analysis(pack, "analog film photo of a street at night"), clip=clip)
    assert clip.encoded == first + 1                    # only the new prompt: LoRA texts cached
