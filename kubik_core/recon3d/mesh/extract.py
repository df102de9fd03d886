"""Mesh from a signed distance function: hierarchical grid decode, marching cubes, cleanup.

A dense decode at resolution R asks the SDF for (R+1)^3 values: 16.9 M network queries at 256^3,
almost all of them far from the surface, where only the sign matters. :func:`extract_mesh`
instead decodes hierarchically (as FlashVDM / Hunyuan3D-2's ``volume_decoders.py`` do):

1. evaluate a coarse grid densely (``coarse_resolution``, by default R/8 but at least 32^3);
2. keep the cells near the surface: those whose corner values reach into (-t, t), where
   t = ``band`` cell diagonals (a sign change among the corners always qualifies). For an exact
   distance half a diagonal would do (every point of a cube is within half a diagonal of a
   corner). A learned SDF is not an exact distance: with a slope up to L, a band of L/2 still
   finds every cell the surface crosses. The default of one diagonal thus tolerates distances
   overestimated up to 2x; a wider band costs queries in proportion (benchmarks/RESULTS.md,
   "decode_hierarchical.py");
3. subdivide the kept cells 2x: query each kept cell's centre first, then every corner of the
   children that are not ruled out - a child is ruled out when its parent's corner on its side
   or its parent's centre, both queried and on one side of the level, lies ``band`` parent
   diagonals or farther from it (with the slope the band tolerates, the whole child is then on
   that side: 27-30% fewer queries on the bunny and on analytic shapes). Every
   other point of the finer grid takes its value by trilinear interpolation from the coarser
   one, so far from the surface the sign is still right (a cell that was kept out has all
   corners of one sign, and interpolation never leaves the corners' range; a ruled-out child's
   interpolated corners are given its sign);
4. repeat up to R; every cell of the finest grid where the sign changes but that was not refined
   (an SDF that jumps, as the winding-number sign does across a hole) gets its corners queried;
   then run marching cubes on the full grid.

Frame: the grid spans [-bound, bound]^3 with point (i, j, k) at ``-bound + (i, j, k) * 2 bound / R``,
axis order x, y, z, the project's convention of a signed distance negative inside. The grid's
outer layer is raised above ``level`` for marching cubes, so shapes cut by the box come out
capped and every mesh is closed. Faces are wound so that normals point out of the solid.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

SDFFunction = Callable[[torch.Tensor], torch.Tensor]
"""Points [N, 3] float32 -> signed distances [N] float32, on the points' device."""

MIN_COARSE_RESOLUTION = 32
DEFAULT_BAND = 1.0
_INDEX_CHUNK = 1 << 22          # grid points scanned per nonzero() call (bounds index memory)
_FIXED_BYTES = 64 << 20         # query batches, small temporaries, the interpreter's slack
_MESH_BYTES_PER_CELL_FACE = 1200  # marching-cubes output and its copies, per R^2 (box-filling shape)


class EmptyShapeError(ValueError):
    """The SDF has no zero crossing inside the box: there is no surface to mesh."""


class DecodeTooLarge(ValueError):
    """Decoding at the asked resolution would need more memory than the limit (raised before allocating)."""


@dataclass
class ExtractedMesh:
    vertices: np.ndarray    # [V, 3] float32, in the normalised frame [-bound, bound]^3
    faces: np.ndarray       # [F, 3] int64, outward winding (normals point out of the solid)
    grid: torch.Tensor      # [R+1]^3 float32 SDF grid, axes x, y, z; exact where queried, interpolated elsewhere
    queries: int            # SDF points evaluated
    seconds: float


def default_coarse_resolution(resolution: int) -> int:
    """Halve ``resolution`` while it stays even and at least max(R/8, 32): 128 -> 32, 256 -> 32, 512 -> 64."""
    floor = max(MIN_COARSE_RESOLUTION, resolution // 8)
    coarse = resolution
    while coarse % 2 == 0 and coarse // 2 >= floor:
        coarse //= 2
    return coarse


def estimate_decode_bytes(resolution: int, hierarchical: bool = True, *, device="cpu") -> int:
    """Peak memory of a decode at ``resolution``, host and device together, in bytes.

    Counted: the float32 grid of P = (R+1)^3 points (4P); for the hierarchical decode, the
    upsampling temporaries and cell/point masks of the last level (3P); on a GPU, the host copy
    marching cubes reads (4P); the mesh arrays, sized for a surface that fills the box. Not
    counted: the SDF function's own activations, which ``batch_points`` bounds.
    """
    points = (resolution + 1) ** 3
    grid = 4 * points
    refinement = 3 * points if hierarchical else 0
    host_copy = 4 * points if torch.device(device).type != "cpu" else 0
    mesh = _MESH_BYTES_PER_CELL_FACE * resolution ** 2
    return grid + refinement + host_copy + mesh + _FIXED_BYTES


def extract_mesh(sdf_fn: SDFFunction, resolution: int = 128, *, bound: float = 1.0, level: float = 0.0,
                 hierarchical: bool = True, batch_points: int = 65536, device="cpu",
                 memory_limit_bytes: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], None] | None = None,
                 keep_largest: bool = True, coarse_resolution: int | None = None,
                 band: float = DEFAULT_BAND) -> ExtractedMesh:
    """Decode ``sdf_fn`` on a grid over [-bound, bound]^3 and mesh its ``level`` set.

    ``hierarchical=False`` queries every grid point (the reference the hierarchical decode is
    measured against). ``coarse_resolution`` (default: :func:`default_coarse_resolution`) must
    divide ``resolution`` by a power of 2; ``band`` is the near-surface margin in cell diagonals
    (see the module docstring). ``keep_largest`` drops every piece but the one of largest area.

    ``progress(done, total)`` is called after each batch of ``batch_points`` queries; the total
    of a hierarchical decode is known level by level, so it is an estimate until the last level
    (later levels are assumed 4x the current one, as a surface band quadruples per halving).
    ``should_stop()`` is called before each batch and raises to interrupt (ComfyUI's Interrupt).
    ``memory_limit_bytes`` defaults to the available RAM (and free GPU memory on CUDA);
    :class:`DecodeTooLarge` is raised before anything is allocated or queried.
    """
    started = time.perf_counter()
    resolution = _check_int("resolution", resolution, minimum=2)
    batch_points = _check_int("batch_points", batch_points, minimum=1)
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a positive number, got {bound!r}")
    if not math.isfinite(level):
        raise ValueError(f"level must be a finite number, got {level!r}")
    if not (math.isfinite(band) and band > 0):
        raise ValueError(f"band must be a positive number of cell diagonals, got {band!r}")
    device = torch.device(device)
    if hierarchical:
        coarse = default_coarse_resolution(resolution) if coarse_resolution is None else coarse_resolution
        _check_coarse(coarse, resolution)
    else:
        coarse = resolution
    _check_memory(resolution, hierarchical, device, memory_limit_bytes)

    decoder = _GridDecoder(sdf_fn, resolution, bound, batch_points, device, progress, should_stop)
    with torch.no_grad():
        grid = decoder.decode(coarse, level, band)
        if should_stop is not None:
            should_stop()
        vertices, faces = _marching_cubes(grid, level, bound)
    if keep_largest:
        vertices, faces = keep_largest_component(vertices, faces)
    return ExtractedMesh(vertices, faces, grid, decoder.queries, time.perf_counter() - started)


def keep_largest_component(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """The connected piece with the largest surface area (faces sharing a vertex are connected).

    Returns float32 vertices and int64 faces re-indexed to the kept vertices only. Marching cubes
    shares vertices between neighbouring faces, so vertex connectivity is surface connectivity.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return vertices[:0], faces
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(len(vertices),) * 2)
    count, labels = connected_components(graph, directed=False)
    if count == 1:
        return vertices, faces
    corners = vertices[faces].astype(np.float64)
    areas = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    face_labels = labels[faces[:, 0]]
    largest = int(np.argmax(np.bincount(face_labels, weights=areas, minlength=count)))
    faces = faces[face_labels == largest]
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]


class _GridDecoder:
    """Queries ``sdf_fn`` on grid points in batches; counts queries, reports progress, honours stops."""

    def __init__(self, sdf_fn, resolution, bound, batch_points, device, progress, should_stop):
        self.sdf_fn = sdf_fn
        self.resolution = resolution
        self.step = 2.0 * bound / resolution
        self.bound = bound
        self.batch_points = batch_points
        self.device = device
        self.progress = progress
        self.should_stop = should_stop
        self.queries = 0
        self.batches_done = 0

    def decode(self, coarse: int, level: float, band: float) -> torch.Tensor:
        """The full-resolution grid, refined from ``coarse`` (== resolution for a dense decode)."""
        levels = int(round(math.log2(self.resolution // coarse)))
        n = coarse + 1
        grid = torch.empty((n, n, n), dtype=torch.float32, device=self.device)
        self._fill(grid, self._all_points(n), n ** 3, stride=self.resolution // coarse,
                   later_levels=levels)
        parents = None
        for done in range(levels):
            r = coarse << done
            diagonal = math.sqrt(3.0) * self.step * (self.resolution // r)   # of a cell at this level
            cells = _near_surface_cells(grid, level, band * diagonal)
            if parents is not None:
                cells &= parents
            # The kept cells' corners hold queried values: those far from the surface rule out
            # the child cell that holds them (step 3 of the module docstring).
            far_corners = (grid - level).abs_() >= band * diagonal
            corner_above = grid > level
            grid = _upsample(grid)
            stride = self.resolution // (2 * r)
            # Their centres first: one query per kept cell, a corner of each of its 8 children.
            centres = torch.zeros_like(grid, dtype=torch.bool)
            centres[1::2, 1::2, 1::2] = cells
            self._fill(grid, self._masked_points(centres.view(-1)), int(torch.count_nonzero(cells)),
                       stride=stride, later_levels=levels - done)
            del centres
            centre_values = grid[1::2, 1::2, 1::2]
            children = _children_to_refine(grid, cells, far_corners, corner_above,
                                           (centre_values - level).abs() >= band * diagonal,
                                           centre_values > level, level)
            del far_corners, corner_above, centre_values
            wanted = _cell_corners(children)
            wanted[::2, ::2, ::2] = False      # the coarse corners already hold queried values
            wanted[1::2, 1::2, 1::2] = False   # and so do the centres
            count = int(torch.count_nonzero(wanted))   # (sum() would copy the mask as int64)
            self._fill(grid, self._masked_points(wanted.view(-1)), count, stride=stride,
                       later_levels=levels - done - 1)
            del wanted
            parents = children
        if parents is not None:
            # A cell where the sign changes but that was not refined (a jump in the SDF, as across
            # a hole under the winding-number sign, between two corners that were not queried):
            # its corners are queried too, so marching cubes places its vertices as a dense
            # decode would.
            crossed = _sign_changes(grid > level)
            crossed[parents] = False
            wanted = _cell_corners(crossed)
            del crossed
            wanted[_cell_corners(parents)] = False
            count = int(torch.count_nonzero(wanted))
            if count:
                self._fill(grid, self._masked_points(wanted.view(-1)), count, stride=1, later_levels=0)
            del wanted
        if self.progress is not None:   # the estimate of later levels ends here: report the true total
            self.progress(self.batches_done, self.batches_done)
        return grid

    def _fill(self, grid, batches: Iterator[torch.Tensor], count: int, stride: int, later_levels: int):
        """Query the flat indices that ``batches`` yields (grid of side grid.shape[0]) and store the values."""
        this_level = math.ceil(count / self.batch_points)
        later = this_level * sum(4 ** k for k in range(1, later_levels + 1))
        total = self.batches_done + this_level + later
        n = grid.shape[0]
        flat_grid = grid.view(-1)
        for flat in batches:
            if self.should_stop is not None:
                self.should_stop()
            ijk = torch.stack((flat // (n * n), (flat // n) % n, flat % n), dim=1) * stride
            points = ijk.to(torch.float32) * self.step - self.bound
            flat_grid[flat] = self._query(points)
            self.batches_done += 1
            if self.progress is not None:
                self.progress(self.batches_done, max(total, self.batches_done))

    def _query(self, points: torch.Tensor) -> torch.Tensor:
        values = self.sdf_fn(points)
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(np.asarray(values))
        if values.numel() != len(points):
            raise ValueError(f"the SDF function returned {values.numel()} values for {len(points)} points "
                             f"(shape {tuple(values.shape)}); it must return one value per point")
        values = values.reshape(-1).to(device=self.device, dtype=torch.float32)
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            first = points[bad.nonzero()[0, 0]].tolist()
            raise ValueError(f"the SDF function returned {int(bad.sum())} NaN or infinite values out of "
                             f"{len(points)} (first at ({first[0]:.3f}, {first[1]:.3f}, {first[2]:.3f})); "
                             "a diverged or corrupt model gives NaNs - check the model file")
        self.queries += len(points)
        return values

    def _all_points(self, n: int) -> Iterator[torch.Tensor]:
        total = n ** 3
        for start in range(0, total, self.batch_points):
            yield torch.arange(start, min(start + self.batch_points, total), device=self.device)

    def _masked_points(self, mask: torch.Tensor) -> Iterator[torch.Tensor]:
        """Flat indices where ``mask`` is True, in batches of exactly batch_points (the last may be short).

        The mask is scanned in chunks so that the index tensors stay small even when most of the
        grid is wanted (a noisy SDF).
        """
        pending = mask.new_empty(0, dtype=torch.int64)
        for start in range(0, mask.numel(), _INDEX_CHUNK):
            found = mask[start:start + _INDEX_CHUNK].nonzero().squeeze(1) + start
            pending = torch.cat((pending, found))
            while len(pending) >= self.batch_points:
                yield pending[:self.batch_points]
                pending = pending[self.batch_points:]
        if len(pending):
            yield pending


def _near_surface_cells(grid: torch.Tensor, level: float, threshold: float) -> torch.Tensor:
    """Cells [r, r, r] whose corner values, minus ``level``, reach into (-threshold, threshold)."""
    corners = [grid[dx:grid.shape[0] - 1 + dx, dy:grid.shape[1] - 1 + dy, dz:grid.shape[2] - 1 + dz]
               for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]
    low = corners[0].clone()
    high = corners[0].clone()
    for corner in corners[1:]:
        torch.minimum(low, corner, out=low)
        torch.maximum(high, corner, out=high)
    return (low < level + threshold) & (high > level - threshold)


def _children_to_refine(grid: torch.Tensor, cells: torch.Tensor, far_corners: torch.Tensor,
                        corner_above: torch.Tensor, far_centres: torch.Tensor, centre_above: torch.Tensor,
                        level: float) -> torch.Tensor:
    """The children [2r]^3 of the kept cells [r]^3 that are to be refined; the others' corners in
    the fine ``grid`` [2r + 1]^3 get the sign those children have.

    A child has two corners with queried values: its parent's corner on its side and its
    parent's centre. One of them ``band`` parent diagonals (two of its own) or farther from the
    level set rules the child out: with a slope of at most 2 band, every point of the child,
    within one child diagonal of that corner, has the corner's sign - the slope the kept cells'
    test tolerates too. A child whose two known corners differ in sign is kept whatever their
    values: an SDF that jumps (the winding-number sign across a hole) has its surface there.
    ``far_corners``/``corner_above`` [r + 1]^3 hold the test and the side on the parent points,
    ``far_centres``/``centre_above`` [r]^3 on the centres.

    The corners of a ruled-out child that were never queried were interpolated from its
    parent's corners, which may straddle the surface elsewhere in the parent; they take the
    child's sign, so that marching cubes draws no surface in it. Its queried corners have that
    sign already. Works one child position at a time on [r]^3 views (no [2r]^3 temporaries)."""
    r = cells.shape[0]
    children = _subdivide(cells)
    nudge = torch.finfo(torch.float32).eps * (1.0 + abs(level))
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                own = (slice(a, a + r), slice(b, b + r), slice(c, c + r))
                above = corner_above[own]
                ruled_out = cells & (far_corners[own] | far_centres) & (above == centre_above)
                children[a::2, b::2, c::2][ruled_out] = False
                i, j, k = ruled_out.nonzero(as_tuple=True)
                if not len(i):
                    continue
                up = above[i, j, k]
                i, j, k = 2 * i + a, 2 * j + b, 2 * k + c   # the ruled-out children's first corners
                for dx in (0, 1):
                    for dy in (0, 1):
                        for dz in (0, 1):
                            corner = grid[i + dx, j + dy, k + dz]
                            wrong = torch.where(up, corner <= level, corner >= level)
                            grid[i + dx, j + dy, k + dz] = torch.where(
                                wrong, torch.where(up, level + nudge, level - nudge), corner)
    return children


def _sign_changes(above: torch.Tensor) -> torch.Tensor:
    """Cells [r]^3 whose corners (points [r + 1]^3, True above the level) are not all on one side
    (:func:`_near_surface_cells` with no band, on booleans: its float temporaries at the finest
    grid would double the decode's peak memory)."""
    r = above.shape[0] - 1
    first = above[:r, :r, :r]
    changes = torch.zeros_like(first)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                changes |= above[dx:dx + r, dy:dy + r, dz:dz + r] != first
    return changes


def _upsample(grid: torch.Tensor) -> torch.Tensor:
    """Trilinear 2x upsampling of a point grid: [n]^3 -> [2n - 1]^3, the old points kept exactly."""
    n = grid.shape[0]
    m = 2 * n - 1
    out = grid.new_empty((m, m, m))
    out[::2, ::2, ::2] = grid
    out[1::2, ::2, ::2] = (out[:-1:2, ::2, ::2] + out[2::2, ::2, ::2]).mul_(0.5)
    out[:, 1::2, ::2] = (out[:, :-1:2, ::2] + out[:, 2::2, ::2]).mul_(0.5)
    out[:, :, 1::2] = (out[:, :, :-1:2] + out[:, :, 2::2]).mul_(0.5)
    return out


def _subdivide(cells: torch.Tensor) -> torch.Tensor:
    """Cell mask [r]^3 -> the mask of their 2x2x2 children [2r]^3."""
    r = cells.shape[0]
    return cells[:, None, :, None, :, None].expand(r, 2, r, 2, r, 2).reshape(2 * r, 2 * r, 2 * r)


def _cell_corners(cells: torch.Tensor) -> torch.Tensor:
    """Cell mask [r]^3 -> point mask [r + 1]^3 of every corner of a marked cell."""
    r = cells.shape[0]
    points = torch.zeros((r + 1,) * 3, dtype=torch.bool, device=cells.device)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                points[dx:dx + r, dy:dy + r, dz:dz + r] |= cells
    return points


def _marching_cubes(grid: torch.Tensor, level: float, bound: float) -> tuple[np.ndarray, np.ndarray]:
    from skimage.measure import marching_cubes

    low, high = float(grid.min()), float(grid.max())
    if not (low < level < high):
        where = "above" if low >= level else "below"
        raise EmptyShapeError(
            f"the decoded SDF has no surface: every value in [-{bound:g}, {bound:g}]^3 is {where} the level "
            f"{level:g} (min {low:.4g}, max {high:.4g}); the shape is "
            f"{'empty' if where == 'above' else 'everything (the whole box is inside)'}")
    volume = grid.detach().cpu().numpy()
    if grid.device.type != "cpu":
        faces_saved = None          # a private host copy: cap it in place
    else:                           # the grid's own memory: cap its outer layer, restore it afterwards
        faces_saved = [volume[0].copy(), volume[-1].copy(), volume[:, 0].copy(), volume[:, -1].copy(),
                       volume[:, :, 0].copy(), volume[:, :, -1].copy()]
    cap = np.float32(np.nextafter(np.float32(level), np.float32(np.inf)))
    try:
        for outer in (volume[0], volume[-1], volume[:, 0], volume[:, -1], volume[:, :, 0], volume[:, :, -1]):
            np.maximum(outer, cap, out=outer)
        step = 2.0 * bound / (grid.shape[0] - 1)
        # skimage's default gradient_direction="descent" winds faces outward for values that
        # decrease into the solid, which a signed distance negative inside does.
        vertices, faces, _, _ = marching_cubes(volume, level, spacing=(step, step, step), allow_degenerate=False)
    finally:
        if faces_saved is not None:
            for outer, saved in zip((volume[0], volume[-1], volume[:, 0], volume[:, -1], volume[:, :, 0],
                                     volume[:, :, -1]), faces_saved):
                outer[...] = saved
    return (vertices - bound).astype(np.float32), faces.astype(np.int64)


def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_coarse(coarse, resolution: int) -> None:
    coarse = _check_int("coarse_resolution", coarse, minimum=2)
    ratio = resolution // coarse
    if coarse > resolution or resolution % coarse or ratio & (ratio - 1):
        raise ValueError(f"coarse_resolution {coarse} must divide resolution {resolution} by a power of 2 "
                         f"(e.g. {default_coarse_resolution(resolution)})")


def _check_memory(resolution: int, hierarchical: bool, device: torch.device, limit: int | None) -> None:
    estimate = estimate_decode_bytes(resolution, hierarchical, device=device)
    if limit is None:
        import psutil

        limit = psutil.virtual_memory().available
        where = "available RAM"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if free < limit:
                limit, where = free, f"free memory on {device}"
    else:
        where = "memory limit"
    if estimate > limit:
        raise DecodeTooLarge(
            f"decoding at resolution {resolution} needs about {estimate / 2 ** 30:.2f} GiB "
            f"({'hierarchical' if hierarchical else 'dense'}), more than the {limit / 2 ** 30:.2f} GiB {where}; "
            f"lower the resolution")
