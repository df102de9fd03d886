"""Prompt weights ``(word:1.2)`` for diffusers pipelines, the way ComfyUI applies them.

diffusers' pipelines encode plain text. ComfyUI (comfy/sd1_clip.py, ``encode_token_weights``)
tokenizes each weighted segment, packs the tokens in chunks of 75 between the start and end
tokens (77 with padding), encodes every chunk and an empty one, and moves each weighted token's
output away from the empty prompt's at the same position: ``z = (z - z_empty) * w + z_empty``.
Chunks are concatenated along the sequence; SDXL's pooled vector comes from the first chunk.
This module does the same with the pipeline's own tokenizers and text encoders and hands the
result to the pipeline as ``prompt_embeds`` (plus ``pooled_prompt_embeds`` for SDXL); with every
weight 1 and one chunk it gives exactly what the pipeline's ``encode_prompt`` gives.
"""
from __future__ import annotations

CHUNK = 75          # tokens between the start and end token of one CLIP window


def _chunks(tokenizer, segments) -> tuple[list[list[int]], list[list[float]]]:
    """Token ids and weights per 77-token window for ``segments`` ((text, weight) pairs)."""
    pairs = []
    for text, weight in segments:
        ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
        pairs += [(token, float(weight)) for token in ids]
    windows = [pairs[start:start + CHUNK] for start in range(0, len(pairs), CHUNK)] or [[]]
    ids, weights = [], []
    for window in windows:
        row = [tokenizer.bos_token_id] + [t for t, _ in window] + [tokenizer.eos_token_id]
        row_weights = [1.0] + [w for _, w in window] + [1.0]
        padding = CHUNK + 2 - len(row)
        ids.append(row + [tokenizer.pad_token_id] * padding)
        weights.append(row_weights + [1.0] * padding)
    return ids, weights


def _encode(pipe, encoder, ids, clip_skip, sdxl: bool):
    """(hidden states [chunks, 77, width], pooled [chunks, width] or None) of one text encoder,
    taken from the layer the pipeline's own encode_prompt takes them from."""
    import torch

    device = pipe._execution_device
    out = encoder(torch.tensor(ids, device=device), output_hidden_states=True)
    if sdxl:
        hidden = out.hidden_states[-2 if clip_skip is None else -(clip_skip + 2)]
        return hidden, out[0]
    if clip_skip is None:
        return out[0], None
    hidden = out.hidden_states[-(clip_skip + 1)]
    return encoder.text_model.final_layer_norm(hidden) if hasattr(encoder, "text_model") \
        else encoder.final_layer_norm(hidden), None


def _weighted(pipe, segments, clip_skip, chunks: int | None):
    """(embeddings [1, 77*chunks, width], pooled or None, chunk count) for one prompt."""
    import torch

    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    pairs = [(pipe.tokenizer, pipe.text_encoder)] + ([(pipe.tokenizer_2, pipe.text_encoder_2)] if sdxl else [])
    hidden_parts, pooled = [], None
    count = chunks
    for tokenizer, encoder in pairs:
        ids, weights = _chunks(tokenizer, segments)
        empty_ids, _ = _chunks(tokenizer, [])
        if count is not None:            # the negative prompt fills up to the positive's windows
            ids += empty_ids * max(0, count - len(ids))
            weights += [[1.0] * (CHUNK + 2)] * max(0, count - len(weights))
        hidden, pool = _encode(pipe, encoder, ids, clip_skip, sdxl)
        empty, _ = _encode(pipe, encoder, empty_ids, clip_skip, sdxl)
        scale = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device).unsqueeze(-1)
        hidden = (hidden - empty) * scale + empty
        hidden_parts.append(hidden.reshape(1, -1, hidden.shape[-1]))
        pooled = pool[:1] if pool is not None else pooled
        count = len(ids)
    return torch.cat(hidden_parts, dim=-1), pooled, count


def weighted_prompt_kwargs(pipe, positive_segments, negative_segments, clip_skip=None) -> dict:
    """The pipeline keyword arguments that carry the weighted prompts (replacing ``prompt`` and
    ``negative_prompt``)."""
    import torch

    with torch.inference_mode():
        positive, pooled, count = _weighted(pipe, positive_segments, clip_skip, None)
        negative, negative_pooled, negative_count = _weighted(pipe, negative_segments, clip_skip, count)
        if negative_count > count:       # a longer negative: the positive fills up with empty windows
            positive, pooled, _ = _weighted(pipe, positive_segments, clip_skip, negative_count)
    kwargs = {"prompt_embeds": positive, "negative_prompt_embeds": negative}
    if pooled is not None:
        kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
    return kwargs
