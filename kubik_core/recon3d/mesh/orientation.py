"""Make the faces of a triangle mesh agree on which side is outside.

Inside/outside comes from the generalized winding number, which follows the faces' winding: a
closed box whose faces were written in shuffled order, some clockwise and some anticlockwise,
gives winding numbers of 1/3 or 2/3 inside instead of 1, and wrong inside labels, although every
edge is shared by two faces ("watertight"). :func:`orient_faces` repairs that:

* faces are joined across edges shared by exactly two faces (a non-manifold edge, shared by
  three or more, joins nothing); two joined faces agree when they run along their shared edge
  in opposite directions;
* each connected piece whose faces can all be made to agree is made to agree (flipping the
  fewest needed relative to one choice); a piece that cannot (a Moebius strip) is left as it was
  and counted, so the caller can flag the mesh;
* which of its two orientations a repaired piece takes: a closed piece (every edge shared by two
  of its faces) the one enclosing positive volume, an open piece the one most of its area
  already had. A closed piece that already agreed is kept, unless it encloses negative volume
  and lies inside no other piece: an inside-out solid, turned outwards (a closed piece inside
  another one may be a cavity and keeps its orientation).

Everything is vectorised (edge grouping by sorting, pieces and orientations as connected
components of a graph and of its two-sided cover), so meshes of millions of faces take seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Orientation:
    """What :func:`orient_faces` did."""

    faces_flipped: int          # faces whose winding was reversed
    non_orientable_parts: int   # connected pieces no orientation makes consistent (left as they were)
    non_manifold_edges: int     # edges shared by three or more faces (pieces are not joined there)

    @property
    def consistent(self) -> bool:
        """Every piece's faces agree (inside/outside labels follow the surface)."""
        return self.non_orientable_parts == 0

    def as_dict(self) -> dict:
        return {"faces_flipped": self.faces_flipped, "non_orientable_parts": self.non_orientable_parts,
                "non_manifold_edges": self.non_manifold_edges, "consistent": self.consistent}


def orient_faces(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, Orientation]:
    """Faces [F, 3] (indices into ``vertices`` [V, 3], vertices already merged, no degenerate
    face) with consistent winding; returns (faces, what was done). ``vertices`` should be in a
    frame of size ~1 (volumes are compared with 0 only, but sums of huge numbers overflow)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = np.asarray(faces, np.int64)
    count = len(faces)
    if count == 0:
        return faces, Orientation(0, 0, 0)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)          # edge k belongs to face k // 3
    ends = np.sort(directed, axis=1)
    forward = directed[:, 0] < directed[:, 1]
    order = np.lexsort((ends[:, 1], ends[:, 0]))
    sorted_ends = ends[order]
    starts = np.r_[True, (sorted_ends[1:] != sorted_ends[:-1]).any(axis=1)]
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group)
    first = np.flatnonzero(starts)                                   # position of each group's first edge
    paired = first[sizes == 2]
    a_edge, b_edge = order[paired], order[paired + 1]
    a, b = a_edge // 3, b_edge // 3
    disagree = forward[a_edge] == forward[b_edge]                    # same direction: one must flip
    edge_paired = np.zeros(len(directed), bool)
    edge_paired[a_edge] = edge_paired[b_edge] = True
    face_closed = edge_paired.reshape(-1, 3).all(axis=1)

    ones = np.ones(len(a), np.int8)
    pieces_graph = coo_matrix((ones, (a, b)), shape=(count, count))
    piece_count, piece = connected_components(pieces_graph, directed=False)
    # Two-sided cover: node f = face f as written, node f + count = face f flipped. Two joined
    # faces that agree link (a, b) and (a', b'); that disagree link (a, b') and (a', b).
    other = b + count * disagree
    rows = np.concatenate([a, a + count])
    cols = np.concatenate([other, np.where(disagree, b, b + count)])
    cover = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(2 * count, 2 * count))
    _, side = connected_components(cover, directed=False)
    kept, flipped_side = side[:count], side[count:]
    orientable_piece = np.ones(piece_count, bool)
    orientable_piece[piece[kept == flipped_side]] = False
    _, root = np.unique(piece, return_index=True)                   # each piece's first face
    relative = kept != kept[root[piece]]                             # flip relative to the piece's first face

    points = np.asarray(vertices, np.float64)[faces]
    doubled_area = np.linalg.norm(np.cross(points[:, 1] - points[:, 0], points[:, 2] - points[:, 0]), axis=1)
    signed = np.einsum("ij,ij->i", points[:, 0], np.cross(points[:, 1], points[:, 2])) / 6.0
    closed_piece = np.bincount(piece, weights=~face_closed, minlength=piece_count) == 0
    needs_repair = np.bincount(piece, weights=relative, minlength=piece_count) > 0
    # Volume of each piece with its faces made to agree with its first face.
    volume = np.bincount(piece, weights=np.where(relative, -signed, signed), minlength=piece_count)
    # Area of each piece that already runs like its first face, against the rest.
    area_like_first = np.bincount(piece, weights=np.where(relative, 0.0, doubled_area), minlength=piece_count)
    area = np.bincount(piece, weights=doubled_area, minlength=piece_count)

    flip_first = np.where(closed_piece, volume < 0, area_like_first < area - area_like_first)
    inverted = orientable_piece & closed_piece & ~needs_repair & (volume < 0)
    for p in np.flatnonzero(inverted):  # an inside-out solid, unless it is a cavity of another piece
        if _inside_rest(points, piece, p):
            flip_first[p] = False
    flip = orientable_piece[piece] & (relative != flip_first[piece])
    oriented = faces.copy()
    oriented[flip] = oriented[flip][:, ::-1]
    result = Orientation(faces_flipped=int(flip.sum()),
                         non_orientable_parts=int((~orientable_piece).sum()),
                         non_manifold_edges=int((sizes > 2).sum()))
    return oriented, result


def _inside_rest(triangles: np.ndarray, piece: np.ndarray, index: int) -> bool:
    """Whether piece ``index`` lies inside the other pieces (|winding number| > 1/2 at one of its
    face centres), whatever their orientation."""
    own = piece == index
    rest = triangles[~own]
    if len(rest) == 0:
        return False
    probe = triangles[np.flatnonzero(own)[0]].mean(axis=0)
    return abs(winding_number(rest, probe)) > 0.5


def winding_number(triangles: np.ndarray, point: np.ndarray) -> float:
    """Generalized winding number of triangles [F, 3, 3] at one point: the sum of their signed
    solid angles (Van Oosterom and Strackee 1983) over 4 pi; exact, O(F)."""
    a, b, c = (triangles[:, i] - point for i in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    numerator = np.einsum("ij,ij->i", a, np.cross(b, c))
    denominator = (la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la
                   + np.einsum("ij,ij->i", c, a) * lb)
    return float(2.0 * np.arctan2(numerator, denominator).sum() / (4.0 * np.pi))
