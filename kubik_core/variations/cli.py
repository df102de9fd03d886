"""``kubik variations``: plan a batch of variations, print it as JSON, and optionally queue it.

    kubik variations --x-axis seed --x-values 0..3 --y-axis cfg --y-values 4,7 --sampler dpmpp_2m
    kubik variations --x-axis seed --x-values 0..7 --queue txt2img.json --server http://127.0.0.1:8188

Without ``--queue`` the plan is printed (or written with ``--write``): the grid's labels and one
entry per variation with its KSampler values, size and LoRAs. With ``--queue WORKFLOW`` each
variation becomes one job of ``kubik queue`` (kubik_core.comfy_client): the workflow's KSampler
gets the variation's values and its EmptyLatentImage the size, only those that vary or that a
flag sets (the rest stays as the workflow has it), and a Kubik Apply LoRA Stack node the
variation's LoRAs. Samplers and schedulers are checked against the server's own lists.
"""
from __future__ import annotations

import json

from ..common.commands import CommandError
from .plan import AXES

# KSampler's inputs and EmptyLatentImage's, by plan field.
KSAMPLER_FIELDS = ("seed", "steps", "cfg", "sampler_name", "scheduler")
LATENT_FIELDS = ("width", "height")


def register(subparsers) -> None:
    cmd = subparsers.add_parser(
        "variations", help="plan a batch of variations (seed, parameters, LoRAs) and optionally queue it",
        description="Plan variations along up to two axes over base KSampler values and print them as "
                    "JSON; with --queue, send one job per variation to ComfyUI servers (as kubik queue).")
    cmd.add_argument("--x-axis", default="seed", choices=AXES, help="what the columns vary (default seed)")
    cmd.add_argument("--x-values", default="0..3", metavar="LIST",
                     help="values of the X axis, comma-separated (default 0..3): seeds or steps (1, 5 or "
                          "0..7), cfg (4, 6.5), sampler or scheduler names, sizes (512x768), LoRA names "
                          "or 'none', strength factors")
    cmd.add_argument("--y-axis", default="none", choices=AXES, help="what the rows vary (default none)")
    cmd.add_argument("--y-values", default="", metavar="LIST", help="values of the Y axis, as --x-values")
    cmd.add_argument("--seed", type=int, help="base seed (default 0, or the workflow's)")
    cmd.add_argument("--steps", type=int, help="base steps (default 20, or the workflow's)")
    cmd.add_argument("--cfg", type=float, help="base CFG (default 7, or the workflow's)")
    cmd.add_argument("--sampler", dest="sampler_name", help="base sampler (default euler, or the workflow's)")
    cmd.add_argument("--scheduler", help="base scheduler (default normal, or the workflow's)")
    cmd.add_argument("--width", type=int, help="base width (default 512, or the workflow's)")
    cmd.add_argument("--height", type=int, help="base height (default 512, or the workflow's)")
    cmd.add_argument("--lora", action="append", default=[], metavar="NAME[:MODEL[:CLIP]]",
                     help="a LoRA of the stack the lora and lora_strength axes use (repeat for several), "
                          "e.g. styles/ink.safetensors:0.8")
    cmd.add_argument("--write", metavar="FILE", help="write the plan's JSON to FILE instead of printing it")
    cmd.add_argument("--queue", metavar="WORKFLOW.json",
                     help="queue the variations of this workflow (API or editor format; one KSampler)")
    cmd.add_argument("--server", action="append", default=[], metavar="URL",
                     help="with --queue: a ComfyUI server (repeat for several)")
    cmd.add_argument("--out", default="variations-out", metavar="DIR",
                     help="with --queue: folder for the pictures and the run log (default ./variations-out)")
    cmd.add_argument("--max-in-flight", type=int, default=2, metavar="N",
                     help="with --queue: prompts queued on one server at a time (default 2)")
    cmd.set_defaults(func=_variations)


def lora_stack_from_flags(specs: list[str]):
    """The LoraStack of the ``--lora NAME[:MODEL[:CLIP]]`` flags, every field checked."""
    from ..loras.stack import LoraStack, StackItem, check_lora_name, check_strength
    from ..loras.errors import LoraStackError

    items = []
    for spec in specs:
        # NAME, then up to two trailing numbers: a name may hold ':' itself
        parts, strengths = spec.split(":"), []
        while len(parts) > 1 and len(strengths) < 2 and _is_number(parts[-1]):
            strengths.insert(0, parts.pop())
        name = ":".join(parts)
        try:
            check_lora_name(name)
            model = check_strength(float(strengths[0]), "strength") if strengths else 1.0
            clip = check_strength(float(strengths[1]), "strength") if len(strengths) > 1 else model
        except LoraStackError as exc:
            raise CommandError(f"--lora {spec[:80]!r}: {exc}") from None
        items.append(StackItem(name=name, strength_model=model, strength_clip=clip))
    return LoraStack(items)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _variations(args) -> int:
    from .plan import BaseSettings, VariationError, plan_variations
    from ..params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS

    stack = lora_stack_from_flags(args.lora)
    given = {name: getattr(args, name) for name in (*KSAMPLER_FIELDS, *LATENT_FIELDS)
             if getattr(args, name) is not None}
    samplers, schedulers = KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS
    target = None
    if args.queue:
        target = _QueueTarget(args)
        samplers, schedulers = target.samplers, target.schedulers
    elif args.server:
        raise CommandError("--server is for --queue: give the workflow to queue, or leave --server out")
    base = BaseSettings(**{**(target.workflow_values() if target else {}), **given})
    try:
        plan = plan_variations(base, args.x_axis, args.x_values, args.y_axis, args.y_values,
                               stack if stack.items else None, samplers=samplers, schedulers=schedulers)
    except VariationError as exc:
        raise CommandError(str(exc).replace("x_values", "--x-values").replace("y_values", "--y-values")
                           .replace("x_axis", "--x-axis").replace("y_axis", "--y-axis")) from None
    text = json.dumps(plan.to_dict(), indent=1)
    if args.write:
        from pathlib import Path

        from ..common.atomic import write_text_atomic

        try:
            write_text_atomic(Path(args.write), text + "\n")
        except OSError as exc:
            raise CommandError(f"--write {args.write}: cannot write ({exc.strerror or exc})") from None
    elif target is None:
        print(text)
    if target is None:
        return 0
    return target.run(plan, set(given) | plan.varied, bool(stack.items))


class _QueueTarget:
    """The workflow to queue and its servers: where each variation's values go."""

    def __init__(self, args):
        import asyncio

        from ..common.paths import writable_folder
        from ..comfy_client.cli import headers_from_environment
        from ..comfy_client.client import ComfyClient, ServerUnavailable, normalize_server_url
        from ..comfy_client.workflow import WorkflowError, load_workflow, to_api

        if not args.server:
            raise CommandError("--queue needs --server URL (the ComfyUI server to queue on)")
        if args.max_in_flight < 1:
            raise CommandError(f"--max-in-flight {args.max_in_flight}: must be 1 or more")
        self.servers = []
        for url in args.server:
            try:
                url = normalize_server_url(url)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if url not in self.servers:
                self.servers.append(url)
        self.headers = headers_from_environment([], self.servers)
        self.args = args
        try:
            data = load_workflow(args.queue)
            self.out = writable_folder(args.out, "--out")
        except (WorkflowError, ValueError) as exc:
            raise CommandError(str(exc)) from None

        async def object_info():
            async with ComfyClient(self.servers[0], self.headers) as client:
                return await client.object_info()

        try:
            info = asyncio.run(object_info())
        except ServerUnavailable as exc:
            raise CommandError(f"{exc} (check --server; nothing was queued)") from None
        try:
            self.api = to_api(data, info)
        except WorkflowError as exc:
            raise CommandError(f"{args.queue}: {exc}") from None
        ksampler = info.get("KSampler", {}).get("input", {}).get("required", {})
        self.samplers = list(ksampler.get("sampler_name", [[]])[0])
        self.schedulers = list(ksampler.get("scheduler", [[]])[0])
        self.sampler_id = self._only("KSampler")
        latent = self.api[self.sampler_id]["inputs"].get("latent_image")
        self.latent_id = str(latent[0]) if isinstance(latent, list) and \
            self.api.get(str(latent[0]), {}).get("class_type") == "EmptyLatentImage" else None

    def _only(self, class_type: str) -> str:
        found = [node_id for node_id, node in self.api.items() if node.get("class_type") == class_type]
        if len(found) != 1:
            raise CommandError(f"{self.args.queue}: the workflow has {len(found)} {class_type} nodes; kubik "
                               f"variations sets the values of exactly one")
        return found[0]

    def workflow_values(self) -> dict:
        """The workflow's own literal values, as the plan's base (links are left to the flags)."""
        values = {}
        for node_id, fields in ((self.sampler_id, KSAMPLER_FIELDS), (self.latent_id, LATENT_FIELDS)):
            inputs = self.api[node_id]["inputs"] if node_id else {}
            values.update({name: inputs[name] for name in fields if name in inputs
                           and not isinstance(inputs[name], list)})
        return values

    def run(self, plan, fields: set[str], has_loras: bool) -> int:
        import copy

        from ..comfy_client.pool import NoServerLeft, PoolSettings, run_jobs
        from ..comfy_client.workflow import Job, job_key

        if fields & set(LATENT_FIELDS) and self.latent_id is None:
            raise CommandError(f"{self.args.queue}: the KSampler's latent_image does not come from an "
                               "EmptyLatentImage, so the size cannot be set")
        lora_id = self._only("KubikApplyLoraStack") if has_loras or "lora_stack" in fields else None
        jobs, seen = [], {}
        for number, variation in enumerate(plan.variations):
            prompt = copy.deepcopy(self.api)
            values = {}
            for name in KSAMPLER_FIELDS:
                if name in fields:
                    prompt[self.sampler_id]["inputs"][name] = values[f"{self.sampler_id}.{name}"] = \
                        getattr(variation, name)
            for name in LATENT_FIELDS:
                if name in fields:
                    prompt[self.latent_id]["inputs"][name] = values[f"{self.latent_id}.{name}"] = \
                        getattr(variation, name)
            if lora_id is not None:
                stack = {"items": [{"name": i.name, "strength_model": i.strength_model,
                                    "strength_clip": i.strength_clip} for i in variation.lora_stack.items]}
                prompt[lora_id]["inputs"]["lora_stack"] = values[f"{lora_id}.lora_stack"] = stack
            key = job_key(prompt)
            if key in seen:
                raise CommandError(f"variations {seen[key] + 1} and {number + 1} would queue the same prompt "
                                   "(a value listed twice?); list each value once")
            seen[key] = number
            jobs.append(Job(name=f"variation{number:02d}-{key[:8]}", key=key, prompt=prompt, values=values))
        print(f"{len(jobs)} variation(s) on {len(self.servers)} server(s); outputs in {self.out}")
        try:
            report = run_jobs(jobs, self.servers, self.out, headers=self.headers,
                              settings=PoolSettings(max_in_flight=self.args.max_in_flight), echo=print,
                              progress=None)
        except NoServerLeft as exc:
            raise CommandError(f"{exc}; run the same command again to resume") from None
        done, skipped, failed = report.count("done"), report.count("skipped"), report.count("failed")
        print(f"{done} done, {skipped} finished before (skipped), {failed} failed; log: {report.log_path}")
        return 1 if failed else 0
