"""How many times a scheduler runs the denoiser for a number of steps, as the scheduler answers.

Asking it means building the diffusers scheduler (diffusers imports torch: seconds), so the
answers also ship with the package (``data/evaluations.json``, written by the workflow's
``package_data`` rule from the zoo's schedulers): ``predict`` reads them there. The table is
keyed by the scheduler's class and config and by the diffusers version that answered; any
other question is asked of the scheduler itself.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import json
import warnings
from collections.abc import Mapping
from typing import Any

from .. import package_data
from .catalog import ZooError
from .classes import import_object

#: Steps up to which the scheduler itself is asked for its timesteps (its training steps, for DDIM).
ASKED_UP_TO = 1000

#: ``mu`` (log of the resolution-dependent time shift) given to a scheduler that shifts its
#: timesteps by the image size: the shift changes where the timesteps lie, not how many there are.
_NEUTRAL_MU = 0.0


def config_key(scheduler_class: str, config: Mapping[str, Any]) -> str:
    """One string per (class, config): the key of the cache and of the shipped table."""
    return json.dumps([scheduler_class, dict(config)], sort_keys=True, default=str)


def evaluations(scheduler_class: str, config: Mapping[str, Any], steps: int, where: str) -> int:
    """Denoiser evaluations of one generation at ``steps`` steps (``ModelSpec.denoiser_evaluations``).

    Beyond ``ASKED_UP_TO`` steps the surplus there carries over (a warm-up adds a fixed number):
    10^15 timesteps would be allocated, and DDIM refuses more than its 1000 training steps.
    """
    asked = min(steps, ASKED_UP_TO)
    for low, high, surplus in _shipped(config_key(scheduler_class, config)):
        if low <= asked <= high:
            return steps + surplus
    return timesteps(scheduler_class, json.dumps(dict(config), sort_keys=True, default=str), asked,
                     where) + (steps - asked)


def _diffusers_version() -> str | None:
    try:
        return importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _shipped(key: str) -> list[list[int]]:
    """The shipped answers of one scheduler: ``[first steps, last steps, evaluations - steps]`` ranges;
    none unless they were answered by the diffusers version installed here."""
    facts = package_data.zoo_facts()
    if not facts or facts.get("diffusers") != _diffusers_version():
        return []
    return list(facts.get("schedulers", {}).get(key, []))


def answer_ranges(scheduler_class: str, config: Mapping[str, Any], where: str) -> list[list[int]]:
    """Every answer of the scheduler for 1 to ``ASKED_UP_TO`` steps, as ranges of equal surplus
    (``[[1, 1, 0], [2, 1000, 1]]`` for PNDM's warm-up): what ``package-data`` ships."""
    config_json = json.dumps(dict(config), sort_keys=True, default=str)
    ranges: list[list[int]] = []
    for steps in range(1, ASKED_UP_TO + 1):
        surplus = timesteps(scheduler_class, config_json, steps, where) - steps
        if ranges and ranges[-1][2] == surplus:
            ranges[-1][1] = steps
        else:
            ranges.append([steps, steps, surplus])
    return ranges


def shipped_versions() -> dict[str, Any]:
    """What the shipped answers were made with (``zoo.json``'s ``diffusers``)."""
    return {"diffusers": _diffusers_version()}


@functools.lru_cache(maxsize=1024)
def timesteps(scheduler_class: str, config_json: str, steps: int, where: str) -> int:
    """``len(scheduler.timesteps)`` after ``set_timesteps(steps)`` (cached: keyed on the class and a
    frozen JSON of its config, so every model with the same scheduler shares one answer)."""
    import torch

    cls = import_object(scheduler_class)
    # On CPU even inside a caller's meta/CUDA device context (diffusers' Euler and DPM-Solver schedulers
    # fail in set_timesteps on CUDA, most on meta: zoo.build_scheduler); a
    # terminal shift at one step divides by zero in the timestep values, never in their number.
    try:
        with torch.device("cpu"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scheduler = cls.from_config(json.loads(config_json))
            kwargs: dict[str, Any] = {}
            if ("mu" in inspect.signature(scheduler.set_timesteps).parameters
                    and scheduler.config.get("use_dynamic_shifting", False)):
                kwargs["mu"] = _NEUTRAL_MU
            scheduler.set_timesteps(steps, device="cpu", **kwargs)
    except Exception as exc:  # noqa: BLE001 - a scheduler fails on its config only; cause kept
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZooError(f"{where}: the scheduler {scheduler_class.rsplit('.', 1)[-1]} cannot set {steps} "
                       f"timesteps: {detail}") from exc
    return int(len(scheduler.timesteps))
