"""Character consistency: do generated pictures still look like the character?

DreamBooth's subject-fidelity metrics (DINO and CLIP-I: cosine similarity of image embeddings),
with a threshold calibrated per character, so that a score means pass or fail for this
character and this encoder.

Where things live:

- ``encoders``   CLIP vision / DINOv2 from a local transformers folder (no download), or any
                 function crops -> vectors (ComfyUI's CLIP_VISION in the node)
- ``crop``       crop to the character: a mask's box, the smart crop, a centre square
- ``calibrate``  the threshold from the references' leave-one-out scores and a negative control
                 (the rule is written out there)
- ``score``      score_images(): crop, embed, calibrate, compare; the report
- ``cli``        ``kubik consistency``
"""
