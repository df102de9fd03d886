"""A tiny random-weight BLIP captioner saved as a real local folder, the way
``save_pretrained`` writes Salesforce/blip-image-captioning-base (config.json,
model.safetensors, processor and tokenizer files), for the --caption-model tests. Its captions
are random word tokens ("w17 w5 ..."): the tests check the mechanics, not what the words say."""
from __future__ import annotations

from pathlib import Path

WORDS = [f"w{i}" for i in range(40)]


def save_tiny_blip(folder: Path) -> Path:
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "[DEC]"]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(vocab_file))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64, bos_token_id=len(vocab) - 1,
                         sep_token_id=3, pad_token_id=0, encoder_hidden_size=32),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)
    return folder
