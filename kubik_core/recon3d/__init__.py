"""3D training data: meshes to signed-distance samples and multi-view renders; mesh metrics.

Two hops to anything here:

* :mod:`.mesh_io`  load any mesh file, clean it, normalise it into [-1, 1]^3 (transform kept)
* :mod:`.sdf`      :class:`MeshSDF`, exact distance + winding-number sign, CPU or CUDA
* :mod:`.sampling` surface / sharp-edge / near-surface / uniform samples (``samples.npz`` layout)
* :mod:`.render`   pyrender multi-view RGBA, depth and normal maps, camera convention
* :mod:`.dataset`  ``kubik 3d preprocess``: folder -> dataset (layout, resumability, report)
* :mod:`.synth`    ``kubik 3d synth``: procedural shapes
* :mod:`.metrics`  Chamfer, F-score, normal consistency, volume IoU
* :mod:`.cli`      the ``kubik 3d`` sub-commands

Conventions (shared with the image-to-3D model): Y up, right-handed (glTF); signed distance
negative inside; ``source = normalized * scale + center`` stored with every sample file.
The on-disk layout is described in README.md beside this file.
"""
