"""A picture a user names on the command line, read whole or refused in one line.

PIL raises a zoo of types for a file it cannot read (UnidentifiedImageError, OSError,
ValueError, SyntaxError from some decoders) and, for a picture whose header claims more than
twice ``Image.MAX_IMAGE_PIXELS`` (a "decompression bomb": a small file that would decode to
gigabytes), ``DecompressionBombError``, which derives from none of them. Every one of these is
turned into the caller's own error class with a line naming the flag, the file and the fix.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path


def read_picture(path: str | os.PathLike, mode: str, flag: str, fix: str, error: type[Exception]):
    """The picture at ``path`` converted to ``mode`` ("RGB", "L", ...), fully decoded.

    ``flag`` names the option it came from (``--control-image``), ``fix`` what to give instead;
    anything unreadable raises ``error`` with one line, never PIL's own exception.
    """
    from PIL import Image

    name = Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below past PIL's hard bound
            with Image.open(path) as image:
                if image.mode.startswith("I;16"):     # 16-bit grey PNG/TIFF ("I" has no fixed range: left to PIL)
                    image = _eight_bit_grey(image)
                return image.convert(mode)
    except Image.DecompressionBombError:
        raise error(f"{flag}: {name} is larger than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, too large to read "
                    "safely; scale it down and save it again") from None
    except (OSError, ValueError, SyntaxError, EOFError):   # UnidentifiedImageError is an OSError
        raise error(f"{flag}: {name} is not a readable picture; {fix}") from None


def _eight_bit_grey(image):
    """A 16-bit grey picture (depth maps, masks saved at 16 bits) as 8-bit grey, scaled by 1/256:
    PIL's own conversion clips every value above 255 to white, so a 30% grey mask read as repaint."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image)
    return Image.fromarray(np.clip(values >> 8, 0, 255).astype(np.uint8), "L")
