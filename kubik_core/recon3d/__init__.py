"""Image to 3D: meshes -> training data, and one picture -> a shape latent -> a watertight mesh.

The face (what the nodes and ``kubik 3d`` call):

* :mod:`.pipeline`     load a model file; image -> shape latent; mesh -> shape latent; latent -> SDF; reconstruct
* :mod:`.sampler`      the flow sampler (Euler / Heun, classifier-free guidance), apart from the network
* :mod:`.image_input`  cut the object out of a picture and frame it as in training
* :mod:`.cli`          the ``kubik 3d`` sub-commands (arguments checked by :mod:`.cli_checks`)
* :mod:`.demo`         the shipped tiny model and the 3D part of ``kubik demo``
* :mod:`.errors`, :mod:`.storage`  ``MeshError``; atomic writes

Over five sub-packages, the data half first:

* :mod:`.mesh`    read, clean and normalise meshes; surface points; metrics; SDF -> mesh; export
* :mod:`.sdf`     :class:`~.sdf.MeshSDF`, exact distance + winding-number sign, CPU or CUDA
* :mod:`.data`    SDF samples, multi-view renders, ``kubik 3d preprocess`` / ``synth``, datasets in memory
* :mod:`.models`  typed configs, the shape VAE, the image encoder, the flow transformer, the model file
* :mod:`.train`   ``kubik 3d train-vae`` / ``encode`` / ``train-flow`` on one CPU, one GPU or torchrun

Conventions (data, models and nodes alike): Y up, right-handed (glTF); shapes normalised into
[-1, 1]^3; signed distance negative inside; ``source = normalized * scale + center`` stored with
every sample file; flow time from noise (t = 0) to data (t = 1). The on-disk layouts are described
in README.md beside this file.
"""
