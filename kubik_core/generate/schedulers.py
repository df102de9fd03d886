"""ComfyUI sampler and scheduler names (what the optimizer chooses) -> diffusers schedulers.

ComfyUI splits a sampling method in two: the *sampler* (the ODE/SDE solver: euler, dpmpp_2m ...)
and the *scheduler* (how the noise levels are spaced: normal, karras ...). diffusers has one
scheduler class per solver, with the spacing as a flag. SAMPLERS and SIGMAS are the tables (the
README's "kubik generate" section shows them); ``diffusers_scheduler`` applies them and returns
the warnings for the pairs that have no exact twin. Known mismatches:

- ``normal`` / ``simple`` / ``sgm_uniform``: ComfyUI spaces the steps over the model's sigmas;
  diffusers spaces timesteps ("leading" for SD/SDXL, "trailing" for sgm_uniform and simple).
  Close, not identical: the same seed gives a similar, not the same, picture as ComfyUI.
- ``kl_optimal``, ``linear_quadratic``, ``ddim_uniform``: no diffusers flag; the scheduler's own
  spacing is used, with a warning.
- Samplers without a diffusers twin (dpm_fast, dpm_adaptive, restart, heunpp2, ipndm, deis
  variants, res_multistep, er_sde, gradient_estimation, seeds_*, sa_solver ...): the nearest
  solver of the same kind (ancestral or not) with a warning.
- ``dpmpp_2s_ancestral``: diffusers has no single-step ancestral DPM++; the nearest is
  ``EulerAncestralDiscreteScheduler`` (warning).
- Random noise: ComfyUI draws the starting noise on the CPU from the seed; diffusers draws it
  from a ``torch.Generator`` on the CPU too here, but in its own order: seeds do not reproduce
  ComfyUI pictures.
- FLUX and SD3.5 (flow matching): the pipeline keeps diffusers' ``FlowMatchEulerDiscreteScheduler``,
  which is ComfyUI's ``euler`` with the model's sigma shift (FLUX dev: shifted with the image size,
  as ComfyUI's ModelSamplingFlux; schnell: unshifted; SD3.5: shift 3). ``simple``, ``normal`` and
  ``sgm_uniform`` space those sigmas evenly as it does; any other sampler or scheduler is not mapped (``flow_matching_notes``
  says so).
"""
from __future__ import annotations

import importlib.util
import inspect

# ComfyUI sampler -> (diffusers class, its arguments, note or "" when it is the same method).
SAMPLERS: dict[str, tuple[str, dict, str]] = {
    "euler": ("EulerDiscreteScheduler", {}, ""),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}, ""),
    "heun": ("HeunDiscreteScheduler", {}, ""),
    "dpm_2": ("KDPM2DiscreteScheduler", {}, ""),
    "dpm_2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}, ""),
    "lms": ("LMSDiscreteScheduler", {}, ""),
    "ddim": ("DDIMScheduler", {}, ""),
    "ddpm": ("DDPMScheduler", {}, ""),
    "uni_pc": ("UniPCMultistepScheduler", {}, ""),
    "uni_pc_bh2": ("UniPCMultistepScheduler", {"solver_type": "bh2"}, ""),
    "lcm": ("LCMScheduler", {}, ""),
    "deis": ("DEISMultistepScheduler", {}, ""),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, ""),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, ""),
    "dpmpp_2m_sde_gpu": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
                         "the _gpu variant draws its noise on the GPU in ComfyUI"),
    "dpmpp_3m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, ""),
    "dpmpp_3m_sde_gpu": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
                         "the _gpu variant draws its noise on the GPU in ComfyUI"),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}, ""),
    "dpmpp_sde_gpu": ("DPMSolverSDEScheduler", {}, "the _gpu variant draws its noise on the GPU in ComfyUI"),
    "dpmpp_2s_ancestral": ("EulerAncestralDiscreteScheduler", {},
                           "diffusers has no single-step ancestral DPM++; Euler ancestral is the nearest"),
}
# Stand-ins for samplers with no twin: ancestral ones keep adding noise, the others do not.
NEAREST_ANCESTRAL = "euler_ancestral"
NEAREST_DETERMINISTIC = "euler"

# ComfyUI scheduler -> (diffusers flags, note or "").
SIGMAS: dict[str, tuple[dict, str]] = {
    "karras": ({"use_karras_sigmas": True}, ""),
    "exponential": ({"use_exponential_sigmas": True}, ""),
    "beta": ({"use_beta_sigmas": True}, ""),
    "normal": ({}, "ComfyUI spaces 'normal' over sigmas, diffusers over timesteps (leading): close, not identical"),
    "sgm_uniform": ({"timestep_spacing": "trailing"}, ""),
    "simple": ({"timestep_spacing": "trailing"}, "ComfyUI's 'simple' is nearest to diffusers' trailing spacing"),
    "ddim_uniform": ({"timestep_spacing": "leading"}, "ddim_uniform is nearest to diffusers' leading spacing"),
}


def resolve(sampler: str, scheduler: str) -> tuple[str, dict, list[str]]:
    """(diffusers class name, its keyword arguments, warnings) for a ComfyUI pair; never raises
    for an unknown name (the nearest stand-in is used and said)."""
    warnings: list[str] = []
    if sampler in SAMPLERS:
        class_name, kwargs, note = SAMPLERS[sampler]
        kwargs = dict(kwargs)
        if note:
            warnings.append(f"sampler {sampler}: {note}")
    else:
        nearest = NEAREST_ANCESTRAL if "ancestral" in sampler or sampler.endswith("_a") else NEAREST_DETERMINISTIC
        class_name, kwargs, _ = SAMPLERS[nearest]
        kwargs = dict(kwargs)
        warnings.append(f"sampler {sampler} has no diffusers twin; using {class_name} ({nearest}), the nearest")
    if scheduler in SIGMAS:
        flags, note = SIGMAS[scheduler]
        kwargs.update(flags)
        if note:
            warnings.append(f"scheduler {scheduler}: {note}")
    else:
        warnings.append(f"scheduler {scheduler} has no diffusers flag; {class_name}'s own spacing is used")
    return class_name, kwargs, warnings


def diffusers_scheduler(base_config, sampler: str, scheduler: str):
    """(scheduler instance, warnings): the pair as a diffusers scheduler built on the pipeline's
    own noise schedule (``base_config``: the loaded pipeline's scheduler.config)."""
    import diffusers

    class_name, kwargs, warnings = resolve(sampler, scheduler)
    cls = getattr(diffusers, class_name)
    accepted = inspect.signature(cls.__init__).parameters
    for flag in [k for k in kwargs if k not in accepted]:
        warnings.append(f"{class_name} has no {flag}; scheduler {scheduler} is approximated by its own spacing")
        kwargs.pop(flag)
    if class_name == "DPMSolverSDEScheduler":
        if importlib.util.find_spec("torchsde") is None:   # DPMSolverSDEScheduler's noise sampler
            cls, class_name = diffusers.DPMSolverMultistepScheduler, "DPMSolverMultistepScheduler"
            kwargs = {k: v for k, v in kwargs.items() if k in inspect.signature(cls.__init__).parameters}
            kwargs.update(algorithm_type="sde-dpmsolver++")
            warnings.append(f"sampler {sampler}: torchsde is not installed; using DPM++ 2M SDE, the nearest")
    return cls.from_config(dict(base_config), **kwargs), warnings


# ComfyUI schedulers that space a flow model's sigmas evenly, as FlowMatchEulerDiscreteScheduler does.
FLOW_EVEN_SPACING = ("simple", "normal", "sgm_uniform")


def flow_matching_notes(sampler: str, scheduler: str) -> list[str]:
    """Warnings for a FLUX or SD3.5 run, whose pipeline keeps its flow-matching Euler scheduler: the
    sampler/scheduler pair it cannot follow."""
    notes = []
    if sampler != "euler":
        notes.append(f"sampler {sampler}: flow models run diffusers' flow-matching Euler here (ComfyUI's euler)")
    if scheduler not in FLOW_EVEN_SPACING:
        notes.append(f"scheduler {scheduler}: flow models run evenly spaced shifted sigmas here (ComfyUI's "
                     "simple)")
    return notes
