"""PNG figures from any capability: matplotlib on its headless Agg backend, written atomically.

matplotlib is imported on first use only, so a command that draws nothing never pays for it.
The figures themselves (classifier curves and confusion matrices, 3D training losses) stay with
their capability; this module only opens pyplot and saves.
"""
from __future__ import annotations

import io
from pathlib import Path

from .atomic import write_bytes_atomic


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (no display needed, safe in workers)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically: a reader never sees half an image) and
    close it, drawn or not, so that long runs drawing every checkpoint do not pile figures up."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path
