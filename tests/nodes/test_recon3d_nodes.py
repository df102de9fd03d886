"""The image-to-3D nodes, run as ComfyUI runs them, on a randomly initialised tiny model.

The model is ``pipeline.build_model("tiny")`` saved into a temporary kubik3d folder (random
weights: the shapes are blobs, but every step from file to mesh file is the real code path).
Images are scikit-image's coffee photo cut out by its horse silhouette.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")
skdata = pytest.importorskip("skimage.data")

RESOLUTION = 32   # small grids keep the decode tests fast; the node default is 128
TINY_LATENT = (64, 3 + 8)  # the tiny config: 64 tokens of anchor xyz + 8 features


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from kubik_core.recon3d.pipeline import build_model, save_model

    folder = tmp_path_factory.mktemp("kubik3d")
    save_model(build_model("tiny", seed=0), folder / "tiny_test.safetensors")
    save_model(build_model("tiny", kind="vae", seed=0), folder / "tiny_vae.safetensors")
    (folder / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    from safetensors.torch import save_file
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4)},
              str(folder / "sdxl_by_mistake.safetensors"))
    nan_model = build_model("tiny", seed=1)
    with torch.no_grad():
        nan_model.vae.to_sdf[1].bias.fill_(float("nan"))
    save_model(nan_model, folder / "diverged.safetensors")
    return folder


@pytest.fixture
def folders(model_dir, tmp_path, monkeypatch):
    """Models, input and output folders as the bridge sees them outside ComfyUI."""
    monkeypatch.setenv("KUBIK_3D_MODELS_DIR", str(model_dir))
    monkeypatch.setenv("KUBIK_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("KUBIK_OUTPUT_DIR", str(tmp_path / "output"))
    (tmp_path / "input" / "3d").mkdir(parents=True)
    return tmp_path


@pytest.fixture(scope="module")
def horse():
    """(IMAGE [1,H,W,3] float, MASK [1,H,W] with 1 on the object) in ComfyUI layouts."""
    mask = torch.from_numpy(~skdata.horse()).float()[None]
    coffee = torch.from_numpy(skdata.coffee()[:328, :400].copy()).float()[None] / 255
    return coffee, mask


@pytest.fixture
def bridge(pack):
    return sys.modules[f"{pack.__name__}.nodes.comfy_bridge"]


@pytest.fixture(scope="module")
def model(node_classes, model_dir):
    """The loaded image-to-shape model, shared by the module's tests (loading takes seconds)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBIK_3D_MODELS_DIR", str(model_dir))
        return node_classes["KubikLoad3DModel"]().load("tiny_test.safetensors", "auto")[0]


def _generate(run_node, model, image, mask=None, **options):
    settings = {"invert_mask": False, "seed": 0, "steps": 2, "cfg": 3.0, "sampler": "euler", **options}
    return run_node("KubikImageToShape", model=model, image=image, mask=mask, **settings)


# ---------------------------------------------------------------- Kubik Load 3D Model
def test_loader_lists_the_kubik3d_folder_and_loads(run_node, node_classes, folders):
    choices = node_classes["KubikLoad3DModel"].INPUT_TYPES()["required"]["model_name"][0]
    assert {"tiny_test.safetensors", "tiny_vae.safetensors"} <= set(choices)
    loaded = run_node("KubikLoad3DModel", model_name="tiny_test.safetensors", device="cpu")[0]
    assert loaded.model.kind == "image-to-shape" and loaded.model.device.type == "cpu"
    assert loaded.patcher is None       # outside ComfyUI nothing manages it


@pytest.mark.parametrize("name, message", [
    ("missing.safetensors", "is not in the kubik3d model folder"),
    ("../kubik3d/tiny_test.safetensors", "is not in the kubik3d model folder"),
    ("corrupt.safetensors", "not a readable safetensors file"),
    ("sdxl_by_mistake.safetensors", "not a KubikAI 3D model"),
    ("diverged.safetensors", "NaN or infinite weights"),
])
def test_loader_refuses_bad_model_files(run_node, folders, name, message):
    with pytest.raises(ValueError, match=f"model_name: .*{message}"):
        run_node("KubikLoad3DModel", model_name=name, device="auto")


# ---------------------------------------------------------------- Kubik Image to Shape
def test_image_to_shape_batch_seed_and_cutout(run_node, model, horse):
    image, mask = horse
    batch = torch.cat([image, image.flip(2)])
    latent, prepared = _generate(run_node, model, batch, mask)
    assert len(latent.latent) == 2 and latent.latent.latents.shape == (2, *TINY_LATENT)
    size = latent.latent.model.image_size  # the framing the model was trained with
    assert prepared.shape == (2, size, size, 3) and prepared.dtype == torch.float32
    corners = prepared[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, torch.ones_like(corners))           # white around the cut-out
    again, _ = _generate(run_node, model, batch, mask)
    other, _ = _generate(run_node, model, batch, mask, seed=1)
    assert torch.equal(again.latent.latents, latent.latent.latents)
    assert not torch.allclose(other.latent.latents, latent.latent.latents)


def test_load_image_mask_needs_invert(run_node, model, horse):
    image, mask = horse
    direct, prepared = _generate(run_node, model, image, mask)
    inverted, prepared_inv = _generate(run_node, model, image, 1.0 - mask, invert_mask=True)
    assert torch.allclose(prepared, prepared_inv)
    assert torch.allclose(direct.latent.latents, inverted.latent.latents)


def test_image_to_shape_errors_name_the_input(run_node, model, horse, folders):
    image, mask = horse
    with pytest.raises(ValueError, match="mask: mask of image 0 is empty.*turn on invert_mask"):
        _generate(run_node, model, image, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="mask: .*Load Image gives for a picture without transparency"):
        _generate(run_node, model, image, torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="image: image 0: no object found"):
        _generate(run_node, model, torch.full((1, 64, 64, 3), 0.5))
    with pytest.raises(ValueError, match="image: image has 1 NaN"):
        broken = image.clone()
        broken[0, 5, 5, 0] = float("nan")
        _generate(run_node, model, broken, mask)
    vae_only = run_node("KubikLoad3DModel", model_name="tiny_vae.safetensors", device="auto")[0]
    with pytest.raises(ValueError, match="model: .*'vae' model.*image-to-shape"):
        _generate(run_node, vae_only, image, mask)
    with pytest.raises(ValueError, match="model: connect the output of Kubik Load 3D Model"):
        _generate(run_node, object(), image, mask)


def test_sampling_reports_progress_and_honours_interrupt(run_node, model, horse, bridge, monkeypatch):
    image, mask = horse
    reports = []

    class Bar:
        def __init__(self, total):
            reports.append(("new", total))

        def update_absolute(self, value, total=None, preview=None):
            reports.append((value, total))

    monkeypatch.setattr(bridge, "progress_bar", Bar)
    _generate(run_node, model, image, mask, steps=3)
    assert reports[0] == ("new", 3) and reports[-1] == (3, 3)

    class Interrupted(Exception):
        pass

    def interrupt():
        raise Interrupted()

    monkeypatch.setattr(bridge, "check_interrupt", interrupt)
    with pytest.raises(Interrupted):
        _generate(run_node, model, image, mask, steps=3)


# ---------------------------------------------------------------- Kubik Decode Shape
@pytest.fixture(scope="module")
def latent(node_classes, model, horse):
    image, mask = horse
    node = node_classes["KubikImageToShape"]()
    return node.generate(model, torch.cat([image, image.flip(2)]), False, 0, 2, 3.0, "euler", mask)[0]


def test_decode_gives_one_mesh_per_latent(run_node, latent, node_classes):
    assert node_classes["KubikDecodeShape"].OUTPUT_IS_LIST == (True, True)
    meshes, grids = run_node("KubikDecodeShape", latent=latent, resolution=RESOLUTION, hierarchical=True)
    assert len(meshes) == len(grids) == 2
    for mesh, grid in zip(meshes, grids):
        assert mesh.vertices.dtype == torch.float32 and mesh.vertices.ndim == 3 and mesh.vertices.shape[0] == 1
        assert mesh.faces.dtype == torch.int64 and mesh.faces.shape[0] == 1 and mesh.faces.shape[2] == 3
        assert mesh.vertices.abs().max() <= 1.0 + 1e-5
        solid = trimesh.Trimesh(mesh.vertices[0].numpy(), mesh.faces[0].numpy(), process=False)
        assert solid.is_watertight and solid.volume > 0        # closed, faces wound outwards
        assert grid.values.shape == (RESOLUTION + 1,) * 3 and grid.bound == 1.0
    dense, _ = run_node("KubikDecodeShape", latent=latent, resolution=RESOLUTION, hierarchical=False)
    assert len(dense) == 2 and dense[0].faces.shape[1] > 0


def test_decode_refuses_a_resolution_too_large_before_allocating(run_node, latent, monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(available=2 ** 30))
    with pytest.raises(ValueError, match=r"resolution: decoding at resolution 1024 needs about .* GiB"):
        run_node("KubikDecodeShape", latent=latent, resolution=1024, hierarchical=True)


def test_decode_refuses_other_values(run_node):
    with pytest.raises(ValueError, match="latent: connect the output of Kubik Image to Shape"):
        run_node("KubikDecodeShape", latent={"samples": torch.zeros(1, 4, 8, 8)}, resolution=32,
                 hierarchical=True)


# ---------------------------------------------------------------- Kubik Save Mesh
@pytest.fixture
def box_mesh(bridge):
    box = trimesh.creation.box(extents=(1.0, 0.5, 0.8))
    return bridge.make_mesh(torch.from_numpy(box.vertices).float()[None],
                            torch.from_numpy(box.faces).long()[None])


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_save_mesh_writes_under_output(run_node, folders, box_mesh, fmt):
    out = run_node("KubikSaveMesh", mesh=box_mesh, filename_prefix="mesh/kubik", format=fmt)
    assert out["result"] == ([f"mesh/kubik_00001_.{fmt}"],)
    assert out["ui"]["3d"] == [{"filename": f"kubik_00001_.{fmt}", "subfolder": "mesh", "type": "output"}]
    saved = trimesh.load(folders / "output" / "mesh" / f"kubik_00001_.{fmt}", force="mesh")
    assert len(saved.faces) == 12 and saved.volume == pytest.approx(0.4, rel=1e-4)
    second = run_node("KubikSaveMesh", mesh=box_mesh, filename_prefix="mesh/kubik", format=fmt)
    assert second["result"] == ([f"mesh/kubik_00002_.{fmt}"],)


def test_save_mesh_batch_and_decoded_meshes(run_node, folders, latent):
    meshes, _ = run_node("KubikDecodeShape", latent=latent, resolution=RESOLUTION, hierarchical=True)
    batch = type(meshes[0])(torch.cat([meshes[0].vertices] * 2), torch.cat([meshes[0].faces] * 2))
    paths = run_node("KubikSaveMesh", mesh=batch, filename_prefix="kubik", format="glb")["result"][0]
    assert paths == ["kubik_00001_.glb", "kubik_00002_.glb"]
    saved = trimesh.load(folders / "output" / paths[1], force="mesh")
    assert len(saved.faces) == meshes[0].faces.shape[1]
    # glTF is Y up and so is the mesh: the file keeps the coordinates.
    assert np.allclose(saved.bounds, [meshes[0].vertices[0].min(0).values.numpy(),
                                      meshes[0].vertices[0].max(0).values.numpy()], atol=1e-6)


def test_save_mesh_refuses_paths_leaving_output(run_node, folders, box_mesh):
    for prefix in ("../escaped/kubik", "/tmp/kubik-escape/kubik"):
        with pytest.raises(ValueError, match="filename_prefix: .*must stay inside the output folder"):
            run_node("KubikSaveMesh", mesh=box_mesh, filename_prefix=prefix, format="glb")
    assert not (folders / "escaped").exists() and not Path("/tmp/kubik-escape").exists()
    with pytest.raises(ValueError, match="mesh: expected a MESH"):
        run_node("KubikSaveMesh", mesh=torch.zeros(3, 3), filename_prefix="mesh/kubik", format="glb")


# ---------------------------------------------------------------- Kubik Mesh to Shape
def test_mesh_to_shape_from_file_and_from_mesh(run_node, model, folders, box_mesh):
    trimesh.creation.capsule(height=1.0, radius=0.4).export(folders / "input" / "3d" / "capsule.ply")
    from_file = run_node("KubikMeshToShape", model=model, mesh_file="3d/capsule.ply", seed=0)[0]
    assert from_file.latent.latents.shape == (1, *TINY_LATENT)
    batch = type(box_mesh)(torch.cat([box_mesh.vertices] * 2), torch.cat([box_mesh.faces] * 2))
    from_mesh = run_node("KubikMeshToShape", model=model, mesh_file="ignored.ply", seed=0, mesh=batch)[0]
    assert from_mesh.latent.latents.shape == (2, *TINY_LATENT)
    assert torch.allclose(from_mesh.latent.latents[0], from_mesh.latent.latents[1])
    meshes, _ = run_node("KubikDecodeShape", latent=from_file, resolution=RESOLUTION, hierarchical=True)
    assert meshes[0].faces.shape[1] > 0


def test_vae_only_model_encodes_meshes(run_node, folders, box_mesh):
    vae_only = run_node("KubikLoad3DModel", model_name="tiny_vae.safetensors", device="auto")[0]
    latent = run_node("KubikMeshToShape", model=vae_only, mesh_file="", seed=0, mesh=box_mesh)[0]
    assert latent.latent.latents.shape == (1, *TINY_LATENT)


def test_mesh_to_shape_refuses_bad_files(run_node, model, folders, tmp_path):
    (tmp_path / "outside.ply").write_text("ply\n")
    (folders / "input" / "3d" / "broken.ply").write_text("ply\nformat nonsense\n")
    for name in ("3d/missing.ply", "../outside.ply", ""):
        with pytest.raises(ValueError, match="mesh_file: .*is not a file inside ComfyUI's input folder"):
            run_node("KubikMeshToShape", model=model, mesh_file=name, seed=0)
    with pytest.raises(ValueError, match="mesh_file: .*broken.ply"):
        run_node("KubikMeshToShape", model=model, mesh_file="3d/broken.ply", seed=0)


# ---------------------------------------------------------------- bridge: ComfyUI's kubik3d folder
def test_kubik3d_folder_is_registered_with_comfyui(bridge, tmp_path, monkeypatch):
    """A stand-in folder_paths with ComfyUI 0.8.0's layout (models_dir, folder_names_and_paths,
    a filename cache); a kubik3d path from extra_model_paths.yaml must be kept."""
    models, extra = tmp_path / "models", tmp_path / "extra"
    (models / "kubik3d").mkdir(parents=True)
    extra.mkdir()
    (models / "kubik3d" / "mine.safetensors").write_bytes(b"x")
    (models / "kubik3d" / "mine.json").write_text("{}")
    (extra / "shared.safetensors").write_bytes(b"x")

    module = types.ModuleType("folder_paths")
    module.models_dir = str(models)
    module.folder_names_and_paths = {"kubik3d": ([str(extra)], set())}
    module.filename_list_cache = {"kubik3d": ([], {}, 0.0)}

    def get_filename_list(name):
        paths, exts = module.folder_names_and_paths[name]
        return [p.relative_to(root).as_posix() for root in map(Path, paths) if root.is_dir()
                for p in sorted(root.rglob("*")) if p.is_file() and (not exts or p.suffix in exts)]

    def get_full_path(name, filename):
        for root in module.folder_names_and_paths[name][0]:
            if (Path(root) / filename).is_file():
                return str(Path(root) / filename)
        return None

    module.get_filename_list, module.get_full_path = get_filename_list, get_full_path
    monkeypatch.setitem(sys.modules, "folder_paths", module)

    names = bridge.KUBIK3D.names()
    assert {"mine.safetensors", "shared.safetensors"} <= set(names) and "mine.json" not in names
    paths, exts = module.folder_names_and_paths["kubik3d"]
    assert paths == [str(extra), str(models / "kubik3d"), bridge.KUBIK3D.bundled_dir]
    assert exts == {".safetensors"} and "kubik3d" not in module.filename_list_cache
    assert bridge.KUBIK3D.path("shared.safetensors") == str(extra / "shared.safetensors")
    bridge.KUBIK3D.register()
    assert len(module.folder_names_and_paths["kubik3d"][0]) == 3


# ---------------------------------------------------------------- inside ComfyUI (a child process)
_COMFY_CHILD = """
import sys
import numpy as np, torch
comfy_dir, tests_dir, npz, out, pack_parent = sys.argv[1:6]
sys.path[:0] = [comfy_dir, tests_dir]
sys.argv = sys.argv[:1] + ([] if torch.cuda.is_available() else ["--cpu"])
import comfy.options
comfy.options.enable_args_parsing()
from comfy_api.latest import Types
from comfy_extras.nodes_hunyuan3d import save_glb
from pathlib import Path
from kubik_testing.pack import load_pack
pack = load_pack(Path(pack_parent))
bridge = sys.modules[pack.__name__ + ".nodes.comfy_bridge"]
data = np.load(npz)
mesh = bridge.make_mesh(torch.from_numpy(data["vertices"])[None], torch.from_numpy(data["faces"])[None])
assert isinstance(mesh, Types.MESH), type(mesh)
save_glb(mesh.vertices[0], mesh.faces[0], out)

# ComfyUI's memory manager loads the model (ModelPatcher sets attributes on what it manages).
import importlib
import comfy.model_management as mm
build_model = importlib.import_module(pack.__name__ + ".kubik_core.recon3d.pipeline").build_model
nodes = sys.modules[pack.__name__ + ".nodes.recon3d"]
model = build_model("tiny", seed=0)
loaded = bridge.load_model_file("kubik3d", "built in memory", lambda _path, device: model.to(device))
assert loaded.patcher is not None and model.device == mm.unet_offload_device(), model.device
with torch.inference_mode():
    image = torch.rand(1, 64, 64, 3) * 0.2 + 0.4
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 20:44] = 1.0
    latent, _ = nodes.KubikImageToShape().generate(loaded, image, False, 0, 1, 3.0, "euler", mask)
assert latent.latent.latents.shape[0] == 1 and model.device == mm.get_torch_device(), model.device
"""


def test_inside_comfyui_save_glb_and_memory_manager(run_node, folders, latent, tmp_path):
    """Core SaveGLB writes our MESH as our GLB has it, and ComfyUI's ModelPatcher can load the
    model and the node samples with it, under inference mode. Runs when $COMFYUI_DIR points at a
    ComfyUI checkout that imports here (CPU or GPU); skipped otherwise."""
    import os
    import subprocess

    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir or not (Path(comfy_dir) / "comfy_extras" / "nodes_hunyuan3d.py").exists():
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to run core SaveGLB and the memory manager")
    meshes, _ = run_node("KubikDecodeShape", latent=latent, resolution=RESOLUTION, hierarchical=True)
    vertices, faces = meshes[0].vertices[0].numpy(), meshes[0].faces[0].numpy()
    np.savez(tmp_path / "mesh.npz", vertices=vertices, faces=faces)
    core_glb = tmp_path / "core.glb"
    (tmp_path / "pack").mkdir()
    proc = subprocess.run([sys.executable, "-c", _COMFY_CHILD, comfy_dir, str(Path(__file__).parents[1]),
                           str(tmp_path / "mesh.npz"), str(core_glb), str(tmp_path / "pack")],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "comfy_api" in proc.stderr and "ModuleNotFoundError" in proc.stderr:
        pytest.skip(f"ComfyUI at {comfy_dir} does not import here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = run_node("KubikSaveMesh", mesh=meshes[0], filename_prefix="mesh/kubik", format="glb")
    core = trimesh.load(core_glb, force="mesh", process=False)
    kubik = trimesh.load(folders / "output" / ours["result"][0][0], force="mesh", process=False)
    assert np.allclose(core.vertices, vertices) and np.array_equal(core.faces, faces)
    assert core.volume > 0 and kubik.volume == pytest.approx(core.volume, rel=1e-6)


# ---------------------------------------------------------------- hostile inputs (issue 15)
def test_image_to_shape_refuses_hostile_values_naming_the_input(run_node, model, horse):
    """Widgets are range-checked by ComfyUI; values linked from other nodes are not."""
    image, mask = horse
    with pytest.raises(ValueError, match=r"^image: image is empty \(shape \(1, 0, 0, 3\)\)$"):
        _generate(run_node, model, torch.zeros(1, 0, 0, 3))
    for options, message in [
        ({"steps": 0}, "steps: must be an integer from 1 to 1000, got 0"),
        ({"steps": 2.5}, "steps: must be an integer from 1 to 1000, got 2.5"),
        ({"cfg": float("nan")}, "cfg: must be a finite number from 0.0 to 100.0, got nan"),
        ({"seed": -1}, "seed: must be an integer from 0 to 18446744073709551615, got -1"),
        ({"sampler": "ddim"}, "sampler: 'ddim' is not one of euler, heun"),
    ]:
        with pytest.raises(ValueError) as info:
            _generate(run_node, model, image, mask, **options)
        assert str(info.value) == message


def test_decode_refuses_an_absurd_resolution_before_decoding(run_node, latent):
    for resolution in (10 ** 6, 0, 64.5):
        with pytest.raises(ValueError) as info:
            run_node("KubikDecodeShape", latent=latent, resolution=resolution, hierarchical=True)
        assert str(info.value) == f"resolution: must be an integer from 16 to 1024, got {resolution}"


def test_save_mesh_refuses_hostile_meshes_and_formats(run_node, folders, bridge):
    box = trimesh.creation.box()
    vertices, faces = torch.from_numpy(box.vertices).float()[None], torch.from_numpy(box.faces).long()[None]
    nan = vertices.clone()
    nan[0, 3, 1] = float("nan")
    for mesh, message in [
        (bridge.make_mesh(nan, faces), "mesh: mesh 0 cannot be saved: 1 vertices have NaN or infinite coordinates"),
        (bridge.make_mesh(vertices, faces + 100), "mesh: mesh 0 cannot be saved: faces index vertices outside 0..7"),
        (bridge.make_mesh(torch.cat([vertices] * 2), faces),
         "mesh: expected a MESH with vertices [B,N,3] and faces [B,M,3]"),
    ]:
        with pytest.raises(ValueError) as info:
            run_node("KubikSaveMesh", mesh=mesh, filename_prefix="mesh/kubik", format="glb")
        assert str(info.value) == message
    with pytest.raises(ValueError, match=r"^format: 'exe' is not one of glb, obj, ply$"):
        run_node("KubikSaveMesh", mesh=bridge.make_mesh(vertices, faces), filename_prefix="mesh/kubik", format="exe")
    assert not (folders / "output" / "mesh").exists()


def test_mesh_to_shape_names_files_without_server_paths_and_refuses_hostile_meshes(run_node, model, folders,
                                                                                   bridge):
    (folders / "input" / "3d" / "broken.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n")
    for name in ("/etc/hostname", "../../outside.ply", "3d/\x00.ply"):
        with pytest.raises(ValueError) as info:
            run_node("KubikMeshToShape", model=model, mesh_file=name, seed=0)
        assert str(info.value).startswith("mesh_file: ") and "is not a file inside ComfyUI's input folder" in str(info.value)
        assert str(folders) not in str(info.value)
    with pytest.raises(ValueError) as info:
        run_node("KubikMeshToShape", model=model, mesh_file="3d/broken.off", seed=0)
    assert str(info.value) == "mesh_file: 3d/broken.off: face 0 refers to vertex 9, but the file has vertices 0..2"

    box = trimesh.creation.box()
    vertices, faces = torch.from_numpy(box.vertices).float()[None], torch.from_numpy(box.faces).long()[None]
    nan = vertices.clone()
    nan[0, 0, 0] = float("nan")
    for mesh, message in [
        (bridge.make_mesh(nan, faces), "mesh: mesh 0: 1 vertices have NaN or infinite coordinates"),
        (bridge.make_mesh(vertices, faces - 50),
         "mesh: mesh 0: 12 faces refer to vertices that do not exist (indices outside 0..7, e.g. -49)"),
        (bridge.make_mesh(vertices, faces.float()),
         "mesh: mesh 0: faces must be an integer [F, 3] array of vertex indices, got float32 (12, 3)"),
        (bridge.make_mesh(vertices[:, :0], faces[:, :0]), "mesh: mesh 0: the mesh has no vertices"),
        (bridge.make_mesh(vertices[:0], faces[:0]), "mesh: expected a MESH with vertices [B,N,3] and faces [B,M,3] "
                                                    "(one faces entry per vertices entry, at least one)"),
    ]:
        with pytest.raises(ValueError) as info:
            run_node("KubikMeshToShape", model=model, mesh_file="", seed=0, mesh=mesh)
        assert str(info.value) == message


def test_mesh_to_shape_reads_an_off_file_with_polygon_faces(run_node, model, folders):
    """Quads and a pentagon among triangles: valid OFF that used to fail with a bare TypeError."""
    (folders / "input" / "3d" / "house.off").write_text(
        "OFF\n10 8 0\n0 0 0\n1 0 0\n1 1 0\n0.5 1.5 0\n0 1 0\n0 0 1\n1 0 1\n1 1 1\n0.5 1.5 1\n0 1 1\n"
        "5 4 3 2 1 0\n5 5 6 7 8 9\n4 0 1 6 5\n4 1 2 7 6\n3 2 3 8\n3 2 8 7\n4 3 4 9 8\n4 4 0 5 9\n")
    from kubik_core.recon3d.mesh.io import load_mesh

    house = load_mesh(folders / "input" / "3d" / "house.off")
    assert house.is_watertight and house.volume == pytest.approx(1.25)   # a unit cube and its roof
    latent = run_node("KubikMeshToShape", model=model, mesh_file="3d/house.off", seed=0)[0]
    assert latent.latent.latents.shape == (1, *TINY_LATENT) and torch.isfinite(latent.latent.latents).all()
