"""3D training data: meshes -> signed-distance samples and multi-view renders, on disk and in memory.

* :mod:`.samples`     surface / sharp-edge / near-surface / uniform samples (``samples.npz`` layout)
* :mod:`.render`      pyrender multi-view RGBA, depth and normal maps, camera convention
* :mod:`.preprocess`  ``kubik 3d preprocess``: folder of meshes -> dataset (layout, resumability, report)
* :mod:`.ray_preprocess` ``--ray``: the same per-mesh work as tasks on a local or remote Ray cluster
* :mod:`.shards`      the dataset as WebDataset-style tar shards, and their reader for training
* :mod:`.synth`       ``kubik 3d synth``: procedural shapes, so a model trains with no download
* :mod:`.shapes`      a dataset's shapes as stacked tensors, the held-out split, the frame each view shows
"""
