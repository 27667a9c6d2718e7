"""The software stacks the data were measured on, named for what they are.

An energy answer speaks for one software stack: the same network costs more
where every kernel is launched eagerly than where kernels are fused and the
sequence is split over GPUs. The laws fit each data source's launch cost and
time factor (``laws.roofline``); a stack is the sources that run it, so a
prediction asks for a stack and is answered with the constants of one of its
sources:

* ``diffusers``: eager PyTorch diffusers pipelines on one GPU, as this workflow
  measures them (``measurement.measure``) and as ML.ENERGY v2 ran its
  text-to-image models (diffusers pipelines, one GPU each). The default for one
  GPU, the same for every model on every GPU kind: what a diffusers user runs.
* ``xdit``: xDiT (xfuser) with Ulysses and ring sequence parallelism, as
  ML.ENERGY v3 runs its text-to-image and text-to-video models on 1-8 GPUs.
  The default on several GPUs: the only stack measured there.

Within a stack the answering source is the one that measured the asked GPU kind
where one did (this workflow before a published one), else the stack's
reference (its published source with the most architectures). Nothing here
depends on the model asked, so two names of one network get one answer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..errors import UsageError
from .schema import THIS_WORKFLOW


@dataclass(frozen=True)
class Stack:
    """A software stack: its name, what it is, the data sources measured on it (preferred first) and the
    one whose constants answer where none of them measured the asked GPU kind."""

    name: str
    description: str
    sources: tuple[str, ...]
    reference: str
    #: The most GPUs one image or video ran on in its sources (diffusers: one).
    max_gpus: int


STACKS: dict[str, Stack] = {s.name: s for s in (
    Stack("diffusers", "eager PyTorch diffusers pipelines, one GPU per image (this workflow, ML.ENERGY v2)",
          (THIS_WORKFLOW, "mlenergy-v2"), "mlenergy-v2", 1),
    Stack("xdit", "xDiT (xfuser) with Ulysses and ring sequence parallelism (ML.ENERGY v3)",
          ("mlenergy-v3", "mlenergy-v3-video"), "mlenergy-v3", 8),
)}
#: The stack an answer speaks for unless asked: on one GPU, and on several.
DEFAULT_ONE_GPU = "diffusers"
DEFAULT_SEVERAL_GPUS = "xdit"


def get(name: str | None, num_gpus: int = 1) -> Stack:
    """The stack named ``name`` (None: the default for ``num_gpus``), or a UsageError listing them."""
    if name is None:
        name = DEFAULT_ONE_GPU if num_gpus <= 1 else DEFAULT_SEVERAL_GPUS
    try:
        stack = STACKS[name]
    except KeyError:
        raise UsageError(f"--stack {name!r} is not a software stack in the data; known: "
                         + "; ".join(f"{s.name} ({s.description})" for s in STACKS.values())) from None
    if num_gpus > stack.max_gpus:
        raise UsageError(f"--stack {stack.name} ran on at most {stack.max_gpus} GPU per image in the data "
                         f"({stack.description}); {num_gpus} GPUs are measured on "
                         + ", ".join(s.name for s in STACKS.values() if s.max_gpus >= num_gpus))
    return stack


def stack_of(source: str) -> str | None:
    """The stack a data source ran (None for a source in no stack, e.g. a paper's quoted figures)."""
    return next((s.name for s in STACKS.values() if source in s.sources), None)


def answering_source(stack: Stack, gpu: str, fitted: Collection[str], measured_by: Mapping[str, str],
                     prefer: str | None = None) -> str:
    """The source whose constants answer for ``stack`` on ``gpu``: ``prefer`` where it is one of the
    stack's (a video's: the stack's video source), else the stack's source that measured ``gpu``
    (``measured_by``: ``"gpu/model" -> source``), else its reference, else any of its sources in
    ``fitted`` (the law's sources; empty: any). A UsageError where none of its sources was fitted."""
    present = [s for s in stack.sources if not fitted or s in fitted]
    if prefer in present:
        return str(prefer)
    if not present:
        raise UsageError(f"--stack {stack.name}: none of its sources ({', '.join(stack.sources)}) is in the "
                         f"fitted data ({', '.join(sorted(fitted))})")
    on_kind = {source for key, source in measured_by.items() if key.split("/", 1)[0] == gpu}
    for source in present:
        if source in on_kind:
            return source
    return stack.reference if stack.reference in present else present[0]


def architectures_run(stack: Stack, measured_by: Mapping[str, str],
                      architecture_of: Mapping[str, str]) -> set[str]:
    """The kinds of denoiser (``unet``, ``dit``, ``mmdit``) ``stack`` ran in the fitted data."""
    return {architecture_of[key.split("/", 1)[1]] for key, source in measured_by.items()
            if source in stack.sources and key.split("/", 1)[1] in architecture_of}
