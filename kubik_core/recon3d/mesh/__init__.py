"""Triangle meshes: reading and cleaning, surface points, metrics, extraction from an SDF, export.

* :mod:`.io`           load any mesh file, clean it, normalise it into [-1, 1]^3 (transform kept)
* :mod:`.off_reader`   OFF files (polygons of any size), read with clear errors
* :mod:`.orientation`  make faces agree on which side is outside (winding numbers depend on it)
* :mod:`.surface`      area-weighted and sharp-edge surface points with normals
* :mod:`.metrics`      Chamfer, F-score, normal consistency, volume IoU
* :mod:`.extract`      signed distance function -> mesh (hierarchical grid, marching cubes)
* :mod:`.export`       GLB / OBJ / PLY, written atomically
"""
