"""Per-stage FLOPs, kernel launches and bytes moved, counted on the meta device.

Why the meta device: ``torch.utils.flop_counter`` is exact there for attention
(on the CPU the SDPA kernel has no FLOP formula and counts 0) and it needs no
memory, so a 20B-parameter transformer is counted in about a second.

Besides FLOPs, one pass also counts what a roofline model of time needs: the
ATen ops dispatched (each a GPU kernel in eager mode) and the bytes they read
and write. On meta, scaled-dot-product attention decomposes into the unfused
math path, whose score matrix would inflate bytes by two orders of magnitude
at high resolution; it is counted as one fused kernel whose bytes are its
inputs and output, as flash attention runs it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from ..errors import UsageError
from ..models import families, zoo
from ..models.families import Call
from ..models.zoo import MODELS_DIR, ComponentSpec, ModelSpec, ZooError, build_component, count_parameters
from .op_names import attention_op

log = logging.getLogger(__name__)

#: Ops that allocate or alias without launching a kernel.
_NO_KERNEL_OPS = {
    "aten._unsafe_view.default",
    "aten.empty.memory_format",
    "aten.empty_strided.default",
    "aten.empty_like.default",
    "aten.new_empty.default",
    "aten.new_empty_strided.default",
    "aten.lift_fresh.default",
    "aten._local_scalar_dense.default",
}


@dataclass(frozen=True)
class OpCount:
    """What one call of a stage costs: FLOPs, kernels launched, bytes moved."""

    flops: int
    kernels: int
    bytes: int


def _tensor_bytes(tree: Any) -> int:
    leaves, _ = tree_flatten(tree)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))


class _KernelCounter(TorchDispatchMode):
    """Records each non-view ATen op, in order: its name, FLOPs and the bytes it reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, int, int]] = []
        self.fused: list[int] | None = None  # FLOPs accumulated inside a fused region

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.is_view or str(func) in _NO_KERNEL_OPS:
            return out
        formula = flop_registry.get(func._overloadpacket)
        op_flops = int(formula(*args, **kwargs, out_val=out)) if formula else 0
        if self.fused is not None:
            self.fused[0] += op_flops
        else:
            self.ops.append((str(func).removeprefix("aten."), op_flops, _tensor_bytes((args, kwargs, out))))
        return out


class _FusedAttention(TorchFunctionMode):
    """Records each ``F.scaled_dot_product_attention`` as one fused kernel, ``sdpa[d=<head dim>]``."""

    def __init__(self, counter: _KernelCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        self.counter.fused = [0]
        try:
            out = func(*args, **kwargs)
            inner_flops = self.counter.fused[0]
        finally:
            self.counter.fused = None
        query = args[0] if args else kwargs["query"]
        self.counter.ops.append((attention_op(int(query.shape[-1])), inner_flops,
                                 _tensor_bytes((args, kwargs, out))))
        return out


#: One call's kernels in launch order: (op, FLOPs, bytes) each.
OpSequence = list[tuple[str, int, int]]

_LEAF_TYPES = (int, float, str, bool, type(None), torch.dtype, torch.device)


def _signature(value: Any) -> Any:
    """A hashable description of a call argument (tensors by shape and dtype); raises if unknown."""
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), value.dtype, tuple(value.stride()))
    if isinstance(value, _LEAF_TYPES):
        return value
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(_signature(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _signature(v)) for k, v in value.items()))
    raise TypeError(type(value).__name__)


def _containers(value: Any) -> list[list | dict]:
    """The lists and dicts among a call's arguments (in tuples too): what a call may write into."""
    if isinstance(value, list | dict):
        return [value]
    if isinstance(value, tuple):
        return [c for v in value for c in _containers(v)]
    return []


def _restore(container: list | dict, state: list | dict) -> None:
    """Write a recorded state (fresh tensors of its shapes) back into a list or dict in place."""
    if isinstance(container, list):
        container[:] = _fresh(state)
    else:
        container.clear()
        container.update(_fresh(state))


def _fresh(value: Any) -> Any:
    """A copy of an output structure with new meta tensors of the same shapes; raises if unknown."""
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
    if isinstance(value, _LEAF_TYPES):
        return value
    if type(value) in (tuple, list):
        return type(value)(_fresh(v) for v in value)
    if type(value) is dict:
        return {k: _fresh(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def _frozen(value: Any) -> Any:
    """An attribute as a hashable value; objects by their class (their own attributes are walked)."""
    if isinstance(value, _LEAF_TYPES):
        return value
    if isinstance(value, tuple | list):
        return tuple(_frozen(v) for v in value)
    return type(value).__qualname__


def _structure(module: torch.nn.Module) -> tuple[Any, ...]:
    """What fixes the kernels a module launches on given inputs: every submodule's class, its
    plain attributes (a convolution's stride, a block's flags), parameter and buffer shapes."""
    parts = []
    for name, sub in module.named_modules():
        attrs = tuple(sorted((k, _frozen(v)) for k, v in vars(sub).items() if not k.startswith("_")))
        tensors = tuple((n, tuple(p.shape), p.dtype) for n, p in (*sub.named_parameters(recurse=False),
                                                                    *sub.named_buffers(recurse=False)))
        parts.append((name, type(sub).__qualname__, attrs, tensors))
    return tuple(parts)


class RepeatedBlocks:
    """Traces each repeated block of a module once per input shape and replays it after.

    Deep models repeat identical blocks (FLUX's 57 transformer blocks, T5's 24
    layers): the same class with parameters of the same shapes, called on inputs
    of the same shapes, launches the same kernels. Tracing every one on the meta
    device was most of the counting time. Blocks are the outermost submodules whose
    structure (``_structure``: classes, plain attributes such as a convolution's
    stride, parameter and buffer shapes) occurs at least twice; a call whose
    arguments are not plain tensors, numbers, strings or containers of them (a
    cache object, say) is traced as usual. A call may write into the lists and dicts
    it is given (the feature cache of Wan's causal VAE): their contents are part of
    the call's key, their state after the call is recorded and written back on a
    replay, so the calls after it see what they would have seen. ``extra`` names
    further modules to replay, called repeatedly though not repeated in structure
    (a causal VAE's decoder, called once per latent frame or chunk). Tests check
    replayed counts against full traces for every family.
    """

    def __init__(self, root: torch.nn.Module, extra: Iterable[str] = ()) -> None:
        groups: dict[Any, list[tuple[str, torch.nn.Module]]] = {}
        for name, module in root.named_modules():
            if module is root or not any(True for _ in module.parameters()):
                continue
            groups.setdefault(_structure(module), []).append((name, module))
        repeated = sorted((name, key) for key, members in groups.items() if len(members) >= 2
                          for name, _ in members)
        self.blocks: list[tuple[torch.nn.Module, Any]] = []
        chosen: list[str] = []
        modules = dict(root.named_modules())
        for name, key in repeated:
            if not any(name.startswith(c + ".") for c in chosen):
                chosen.append(name)
                self.blocks.append((modules[name], key))
        # Replays nest: a miss of an outer module records the inner replays its trace made.
        self.blocks += [(modules[name], ("named", name)) for name in extra if name not in chosen]
        self.memo: dict[Any, tuple[OpSequence, Any, list[Any]]] = {}
        self.counter: _KernelCounter | None = None
        self.hits = 0

    def _wrap(self, module: torch.nn.Module, key: Any) -> Callable[..., Any]:
        forward = module.forward

        def replay(*args: Any, **kwargs: Any) -> Any:
            counter = self.counter
            try:
                call_key = (key, _signature(args), _signature(kwargs))
            except TypeError:
                return forward(*args, **kwargs)
            state = _containers((args, tuple(kwargs.values())))
            if counter is not None and call_key in self.memo:
                ops, out, after = self.memo[call_key]
                counter.ops.extend(ops)
                for container, recorded in zip(state, after, strict=True):
                    _restore(container, recorded)
                self.hits += 1
                return _fresh(out)
            start = len(counter.ops) if counter is not None else 0
            out = forward(*args, **kwargs)
            if counter is not None and counter.fused is None:
                try:
                    self.memo[call_key] = (counter.ops[start:], _fresh(out), [_fresh(c) for c in state])
                except TypeError:
                    pass
            return out

        return replay

    def __enter__(self) -> RepeatedBlocks:
        for module, key in self.blocks:
            module.forward = self._wrap(module, key)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, _ in self.blocks:
            del module.forward


def trace_ops(fn: Callable[[], Any], blocks: RepeatedBlocks | None = None) -> OpSequence:
    """The kernels of one call of ``fn`` (run it on meta tensors), in launch order.

    With ``blocks`` (of the module ``fn`` calls), repeated blocks are traced once per
    input shape and replayed after (``RepeatedBlocks``).
    """
    counter = _KernelCounter()
    with counter, _FusedAttention(counter), contextlib.ExitStack() as stack:
        if blocks is not None:
            blocks.counter = counter
            stack.enter_context(blocks)
        with torch.no_grad():
            fn()
    if blocks is not None:
        blocks.counter = None
    return counter.ops


def summarize_ops(sequence: OpSequence) -> tuple[OpCount, pd.DataFrame]:
    """Totals and the per-op table (op, flops, bytes, count) of one call's kernels."""
    counts = Counter(sequence)
    ops = pd.DataFrame([(op, f, b, n) for (op, f, b), n in counts.items()],
                       columns=["op", "flops", "bytes", "count"])
    total = OpCount(flops=sum(f for _, f, _ in sequence), kernels=len(sequence),
                    bytes=sum(b for _, _, b in sequence))
    return total, ops


def count_ops(fn: Callable[[], Any]) -> tuple[OpCount, pd.DataFrame]:
    """Totals and the per-op table (op, flops, bytes, count) of one call of ``fn``.

    Per-op FLOPs use ``torch.utils.flop_counter``'s own formulas, so their sum is
    what ``FlopCounterMode`` reports (a test checks it); running that mode as well
    would compute every formula twice.
    """
    return summarize_ops(trace_ops(fn))


def count_call(fn: Callable[[], Any]) -> OpCount:
    """FLOPs, kernels and bytes of ``fn()``; run it on meta tensors."""
    return count_ops(fn)[0]


def extrapolate_batch(one: OpSequence, two: OpSequence, batch: int) -> OpSequence | None:
    """The kernels of a call at ``batch`` from the same call counted at batch 1 and 2.

    A call's kernels do not depend on its batch, and each kernel's FLOPs and
    bytes are an affine function of it (weights are read once per call,
    activations once per sample), so two counts give every batch exactly. None
    if the two counts launch different kernels (then count that batch directly).
    Tests check the result against direct counts of every family.
    """
    if len(one) != len(two) or any(not _same_kernel(a[0], b[0]) for a, b in zip(one, two, strict=True)):
        return None
    k = batch - 1
    return [(op, f1 + k * (f2 - f1), b1 + k * (b2 - b1))
            for (_, f1, b1), (op, f2, b2) in zip(one, two, strict=True)]


#: Matrix products that dispatch as one another with the batch (a linear layer's ``mm`` on one
#: sample is a ``bmm`` on several): the same work, and the derived entries take batch 2's name.
_MATMULS = {"mm.default", "bmm.default", "addmm.default", "baddbmm.default"}


def _same_kernel(a: str, b: str) -> bool:
    return a == b or (a in _MATMULS and b in _MATMULS)


def count_batches(prepare: Callable[[int], Callable[[], Any]], batches: Iterable[int],
                  blocks: RepeatedBlocks | None = None, what: str = "a call") -> dict[int, OpSequence]:
    """The kernels of one kind of call at each of ``batches``, counting at most two of them.

    ``prepare(b)`` makes the call's inputs at batch ``b`` and returns the call.
    The first call is made once before it is counted: a model may build state on
    its first call of a shape (Qwen-Image's rotary table), which the steps of an
    image after the first do not repeat, and the counts are those of a step in
    steady state. With more than two batches, batches 1 and 2 are counted and the
    others derived (``extrapolate_batch``); a batch that cannot be derived is counted.
    That is exact, only slower, so it is logged at info level: some models add
    copies (``clone``) at batch > 1 that make the two kernel lists differ.
    """
    wanted = sorted(set(batches))
    first = 1 if len(wanted) > 2 else wanted[0]
    trace_ops(prepare(first), blocks)  # warm: the state a first call builds is not a step's work
    if len(wanted) <= 2:
        return {b: trace_ops(prepare(b), blocks) for b in wanted}
    base = {b: trace_ops(prepare(b), blocks) for b in (1, 2)}
    out: dict[int, OpSequence] = {}
    for b in wanted:
        derived = base[b] if b in base else extrapolate_batch(base[1], base[2], b)
        if derived is None:
            log.info("%s, batch %d: other kernels at batch 1 and 2; counted directly", what, b)
            derived = trace_ops(prepare(b), blocks)
        out[b] = derived
    return out


def non_embedding_parameters(module: torch.nn.Module) -> int:
    """Kaplan's N: parameters outside input embedding tables."""
    emb = sum(
        p.numel() for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    )
    return count_parameters(module) - emb


def _attention_shape(comp: ComponentSpec) -> tuple[int, int]:
    """(layers, attention width) of a transformer component, (0, 0) if it has none."""
    cfg: Mapping[str, Any] = comp.config
    if "text_config" in cfg:
        cfg = cfg["text_config"]
    layers = cfg.get("num_hidden_layers", cfg.get("num_layers", 0))
    layers += cfg.get("num_single_layers", 0)
    if "num_heads" in cfg and "d_kv" in cfg:  # T5
        width = cfg["num_heads"] * cfg["d_kv"]
    elif "attention_head_dim" in cfg and isinstance(cfg.get("num_attention_heads"), int):
        width = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    else:
        width = cfg.get("hidden_size", 0)
    if "UNet" in comp.class_path or "Autoencoder" in comp.class_path:
        return 0, 0
    return int(layers), int(width)


def analytic_flops(comp: ComponentSpec, n_nonembedding: int, n_ctx: int, batch: int) -> int:
    """Kaplan-style estimate: per token 2N + 2 n_layer n_ctx d_attn.

    For the U-Net and the VAE (convolutional, no single token sequence) only the
    2N term is kept, with latent positions as tokens; it is an upper bound that
    ignores weight sharing across positions at coarser levels.
    """
    layers, width = _attention_shape(comp)
    per_token = 2 * n_nonembedding + 2 * layers * n_ctx * width
    return batch * n_ctx * per_token


FLOPS_COLUMNS = [
    "model", "architecture", "family", "resolution", "frames", "cfg", "batch", "stage", "component",
    "params", "params_nonembedding", "call_batch", "calls", "per", "tokens",
    "flops", "flops_analytic", "kernels", "bytes",
]


OPS_COLUMNS = ["model", "resolution", "frames", "cfg", "batch", "stage", "component", "op", "flops", "bytes",
               "count"]


def count_model(
    spec: ModelSpec,
    resolutions: Iterable[int],
    cfgs: Iterable[bool],
    batches: Iterable[int],
    dtype: torch.dtype = torch.float16,
) -> pd.DataFrame:
    """One row per (resolution, cfg, batch, stage component) for one architecture.

    ``flops``, ``kernels`` and ``bytes`` are per call; ``calls`` says how many
    calls there are ``per`` image (text encoders, VAE) or per step (denoiser).
    Bytes depend on ``dtype`` (fp16 by default); FLOPs do not, kernels only by a
    few casts.
    """
    return count_model_ops(spec, resolutions, cfgs, batches, dtype)[0]


def count_model_ops(
    spec: ModelSpec,
    resolutions: Iterable[int],
    cfgs: Iterable[bool],
    batches: Iterable[int],
    dtype: torch.dtype = torch.float16,
    frames: Iterable[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``count_model``'s table and the per-op table behind it (``OPS_COLUMNS``).

    Each component is built once on meta; each distinct call (component, shape)
    is counted at most at two batches, the rest derived (``count_batches``):
    CFG settings and batch sizes repeat the same calls at other batches. The
    per-op table has one row per distinct (op, FLOPs, bytes) of one call of a
    component, with ``count`` its occurrences in that call: what a roofline
    model of time sums over.
    """
    shapes = [(r, c, b, f) for r in resolutions for c in cfgs for b in batches for f in (frames or [None])]
    return count_shapes(spec, shapes, dtype)


def frames_shape(spec: ModelSpec, shape: tuple) -> tuple[int, bool, int, int]:
    """(resolution, cfg, batch[, frames]) -> (resolution, cfg, batch, frames); frames missing or
    None: the model's usual (1 for an image model, its default video length for a video model)."""
    res, cfg, batch, *rest = shape
    frames = rest[0] if rest and rest[0] is not None else spec.default_frames
    return int(res), bool(cfg), int(batch), int(frames)


def count_shapes(spec: ModelSpec, shapes: Iterable[tuple],
                 dtype: torch.dtype = torch.float16, replay_blocks: bool = True
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``count_model_ops`` for an explicit set of (resolution, cfg, batch[, frames]) shapes.

    ``replay_blocks`` traces repeated blocks once per input shape (``RepeatedBlocks``);
    False traces every block (what the tests compare with). A video's resolution is
    its short side (``ModelSpec.frame_size``); ``frames`` is 1 for an image model.
    """
    shapes = sorted({frames_shape(spec, s) for s in shapes})
    for res in sorted({r for r, *_ in shapes}):
        spec.check_resolution(res)
    plan = [(res, cfg, batch, frames, call) for res, cfg, batch, frames in shapes
            for call in families.calls(spec, res, cfg, batch, frames)]
    base = {"model": spec.name, "architecture": spec.architecture, "family": spec.family}
    rows: list[dict[str, Any]] = []
    op_tables: list[pd.DataFrame] = []
    for comp in spec.components:
        mine = [entry for entry in plan if entry[4].component == comp.name]
        if not mine:
            continue
        module = build_component(spec, comp, "meta", dtype)
        n = count_parameters(module)
        n_ne = (_decoder_parameters(module) if comp.stage == "vae" else non_embedding_parameters(module))
        calls: dict[tuple[Any, ...], Call] = {}
        needed: dict[tuple[Any, ...], set[int]] = {}
        for *_, call in mine:
            calls.setdefault(call.shape, call)
            needed.setdefault(call.shape, set()).add(call.call_batch)
        blocks = RepeatedBlocks(module, families.replayed_modules(spec, comp)) if replay_blocks else None
        try:
            counted = {
                shape: {b: summarize_ops(seq) for b, seq in count_batches(
                    lambda b, c=calls[shape], m=module: c.prepare(m, b, "meta", dtype), needed[shape],
                    blocks, f"{spec.name} {comp.name} {shape}").items()}
                for shape in calls
            }
        except (RuntimeError, OverflowError) as exc:
            if "overflow" in str(exc).lower():
                res, batch = max(r for r, *_ in mine), max(b for batches in needed.values() for b in batches)
                raise UsageError(f"{spec.name}: {comp.name} cannot be counted at {res:,} px in calls of "
                                 f"batch {batch:,} (its tensors would pass int64 sizes: "
                                 f"{str(exc).splitlines()[0]})") from None
            if spec.source is None or spec.source.resolve().parent == MODELS_DIR.resolve():
                raise  # a shipped architecture that fails is a bug: keep the traceback
            raise ZooError(f"{spec.source}: components.{comp.name} fails in a forward pass (counted on the "
                           f"meta device): {str(exc).strip().splitlines()[0]}; check its config against "
                           "the other components'") from exc
        for res, cfg, batch, frames, call in mine:
            total, ops = counted[call.shape][call.call_batch]
            rows.append({**base, "resolution": res, "frames": frames, "cfg": cfg, "batch": batch,
                         "stage": call.stage,
                         "component": comp.name, "params": n, "params_nonembedding": n_ne,
                         "call_batch": call.call_batch, "calls": call.calls, "per": call.per,
                         "tokens": call.tokens,
                         "flops_analytic": analytic_flops(comp, n_ne, call.tokens, call.call_batch),
                         **asdict(total)})
            op_tables.append(ops.assign(model=spec.name, resolution=res, frames=frames, cfg=cfg, batch=batch,
                                        stage=call.stage, component=comp.name))
        del module
    frame = pd.DataFrame(rows, columns=FLOPS_COLUMNS)
    frame = frame.sort_values(["resolution", "frames", "cfg", "batch", "stage", "component"],
                              ignore_index=True)
    ops = pd.concat(op_tables, ignore_index=True)[OPS_COLUMNS] if op_tables else pd.DataFrame(
        columns=OPS_COLUMNS)
    return frame, ops


def _decoder_parameters(module: torch.nn.Module) -> int:
    """Parameters a VAE decode uses (not the encoder's)."""
    return sum(p.numel() for name, p in module.named_parameters()
               if not name.startswith(("encoder", "quant")))


def per_image_totals(flops: pd.DataFrame, steps: int, evaluations: int | None = None) -> pd.DataFrame:
    """FLOPs, kernels and bytes per image (or video) at ``steps`` steps, by (model, res, frames, cfg,
    batch); a table without ``frames`` is of images.

    A per-step call runs once per denoiser evaluation: ``evaluations`` where given (a model given
    as a file), else each zoo model's own (``ModelSpec.denoiser_evaluations``; steps + 1 for PNDM).
    """
    if evaluations is None:
        models = flops["model"].astype(str).unique()
        per_model = {m: zoo.zoo_spec(m).denoiser_evaluations(steps) for m in models}
        per_step = flops["model"].astype(str).map(per_model).astype(float)
    else:
        per_step = pd.Series(float(evaluations), index=flops.index)
    # float64: per-call counts x calls x steps can pass int64's range (and would wrap round).
    mult = flops["calls"].astype(float) * per_step.where(flops["per"] == "step", 1.0)
    scaled = flops.assign(
        flops=flops["flops"].astype(float) * mult, kernels=flops["kernels"].astype(float) * mult,
        bytes=flops["bytes"].astype(float) * mult
    )
    keys = ["model", "resolution", *(["frames"] if "frames" in flops else []), "cfg", "batch"]
    return scaled.groupby(keys, as_index=False)[["flops", "kernels", "bytes"]].sum()
