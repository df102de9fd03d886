"""Read OFF files (Object File Format, as in ModelNet and the Princeton Shape Benchmark).

Why not trimesh's reader: it fails with a bare TypeError on valid files that mix triangles with
polygons of five or more sides, and it trusts the declared counts. Here every face of three or
more vertices is read, polygons are split into triangle fans from their first vertex (exact for
the convex polygons OFF writers produce), and anything the file gets wrong is an
:class:`OffError` that says what and where, with no allocation beyond what the file holds.

Accepted: the header keyword ``OFF`` with the optional prefixes ``ST``, ``C``, ``N`` (texture
coordinates, colours, normals: read past, only xyz is kept), on its own line or glued to the
counts (``OFF8 6 0``, a known ModelNet defect); ``#`` comments; extra numbers after a vertex's
xyz or a face's indices (colours). Refused with a message: binary OFF, 4D and nD OFF.
"""
from __future__ import annotations

import re

import numpy as np

_HEADER = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF", re.ASCII)


class OffError(ValueError):
    """An OFF file that cannot be read, and why."""


def read_off(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float64 [V, 3], faces int64 [F, 3]) of an OFF file's bytes."""
    text = data.decode("utf-8", errors="replace")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise OffError("the file is empty (no OFF header)")
    match = _HEADER.match(lines[0])
    if match is None:
        raise OffError(f"not an OFF file: it starts with {lines[0][:20]!r}, not the keyword OFF")
    if match.group(4) or match.group(5):
        raise OffError(f"{match.group(0)} files (4D or n-dimensional) are not supported; only 3D OFF is")
    rest = lines[0][match.end():].split()
    if rest and rest[0].upper() == "BINARY":
        raise OffError("binary OFF is not supported; write the file as text OFF (or as PLY)")
    if rest:
        counts, body = rest, lines[1:]
    elif len(lines) > 1:
        counts, body = lines[1].split(), lines[2:]
    else:
        raise OffError("the file ends after its header: the vertex and face counts are missing")
    vertex_count, face_count = _counts(counts)
    if len(body) < vertex_count + face_count:
        raise OffError(f"the header declares {vertex_count} vertices and {face_count} faces, but the file "
                       f"holds only {len(body)} lines after it (truncated?)")
    vertices = _vertices(body[:vertex_count])
    faces = _faces(body[vertex_count:vertex_count + face_count], vertex_count)
    return vertices, faces


def _counts(tokens: list[str]) -> tuple[int, int]:
    if len(tokens) < 2 or not all(t.isascii() and t.isdigit() for t in tokens[:2]):
        raise OffError(f"the counts line must start with the numbers of vertices and faces, got "
                       f"{' '.join(tokens)[:40]!r}")
    return int(tokens[0]), int(tokens[1])


def _vertices(lines: list[str]) -> np.ndarray:
    out = np.empty((len(lines), 3), np.float64)
    for i, line in enumerate(lines):
        xyz = line.split()[:3]
        try:
            if len(xyz) != 3:
                raise ValueError
            out[i] = [float(v) for v in xyz]
        except ValueError:
            raise OffError(f"vertex {i} is not three numbers: {line[:40]!r}") from None
    return out


def _faces(lines: list[str], vertex_count: int) -> np.ndarray:
    triangles: list[list[int]] = []
    for i, line in enumerate(lines):
        tokens = line.split()
        try:
            size = int(tokens[0])   # lines are never empty
            corners = [int(t) for t in tokens[1:size + 1]] if size >= 3 else []
        except ValueError:
            raise OffError(f"face {i} is not a vertex count followed by vertex indices: {line[:40]!r}") from None
        if size < 3:
            raise OffError(f"face {i} has {size} vertices; a face needs at least 3")
        if len(corners) < size:
            raise OffError(f"face {i} declares {size} vertices but lists {len(corners)}")
        bad = [c for c in corners if not 0 <= c < vertex_count]
        if bad:
            raise OffError(f"face {i} refers to vertex {bad[0]}, but the file has vertices 0..{vertex_count - 1}")
        triangles.extend([corners[0], corners[k], corners[k + 1]] for k in range(1, size - 1))
    return np.asarray(triangles, np.int64).reshape(-1, 3)
