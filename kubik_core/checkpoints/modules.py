"""Filling diffusers / transformers modules from a checkpoint's tensors, every tensor accounted
for, and keeping the libraries quiet while they load (the commands draw their own progress)."""
from __future__ import annotations

from .layout import CheckpointError


def load_strict(model, state: dict, what: str, file: str, layout: str = "SD1.5", assign: bool = False):
    """Load ``state`` into ``model`` and return it in eval mode; a missing, unexpected or
    wrongly shaped tensor is one clear line naming ``file``, the part (``what``) and ``layout``.
    ``assign``: the tensors become the parameters (for a model built on the meta device)."""
    try:
        result = model.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as exc:      # a tensor of the wrong shape
        raise CheckpointError(f"{file}: its {what} does not fit the {layout} layout "
                              f"({str(exc).splitlines()[-1].strip()[:160]})") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        detail = f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}"
        raise CheckpointError(f"{file}: its {what} does not fit the {layout} layout ({detail})")
    return model.eval()


def no_init_weights():
    """transformers' context that skips random initialisation (every weight is loaded after)."""
    try:
        from transformers.initialization import no_init_weights as skip
    except ImportError:            # transformers before 5
        from transformers.modeling_utils import no_init_weights as skip
    return skip()


def quiet_libraries() -> None:
    """No progress bars or info logging from diffusers and transformers while they load."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
