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

from . import families
from .zoo import ComponentSpec, ModelSpec, build_component, count_parameters

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
    """Records each non-view ATen op: its name, FLOPs and the bytes it reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[tuple[str, int, int]] = Counter()
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
            self.ops[(str(func).removeprefix("aten."), op_flops, _tensor_bytes((args, kwargs, out)))] += 1
        return out


class _FusedAttention(TorchFunctionMode):
    """Records each ``F.scaled_dot_product_attention`` as one fused kernel, ``sdpa``."""

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
        self.counter.ops[("sdpa", inner_flops, _tensor_bytes((args, kwargs, out)))] += 1
        return out


def count_ops(fn: Callable[[], Any]) -> tuple[OpCount, pd.DataFrame]:
    """Totals and the per-op table (op, flops, bytes, count) of one call of ``fn``.

    Per-op FLOPs use ``torch.utils.flop_counter``'s own formulas, so their sum is
    what ``FlopCounterMode`` reports (a test checks it); running that mode as well
    would compute every formula twice.
    """
    counter = _KernelCounter()
    with counter, _FusedAttention(counter):
        with torch.no_grad():
            fn()
    ops = pd.DataFrame(
        [(op, f, b, n) for (op, f, b), n in counter.ops.items()],
        columns=["op", "flops", "bytes", "count"],
    )
    total = OpCount(
        flops=int((ops["flops"] * ops["count"]).sum()),
        kernels=int(ops["count"].sum()),
        bytes=int((ops["bytes"] * ops["count"]).sum()),
    )
    return total, ops


def count_call(fn: Callable[[], Any]) -> OpCount:
    """FLOPs, kernels and bytes of ``fn()``; run it on meta tensors."""
    return count_ops(fn)[0]


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
    "model", "architecture", "family", "resolution", "cfg", "batch", "stage", "component",
    "params", "params_nonembedding", "call_batch", "calls", "per", "tokens",
    "flops", "flops_analytic", "kernels", "bytes",
]


OPS_COLUMNS = ["model", "resolution", "cfg", "batch", "stage", "component", "op", "flops", "bytes", "count"]


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``count_model``'s table and the per-op table behind it (``OPS_COLUMNS``).

    The per-op table has one row per distinct (op, FLOPs, bytes) of one call of
    a component, with ``count`` its occurrences in that call: what a roofline
    model of time sums over.
    """
    resolutions, cfgs, batches = sorted(set(resolutions)), sorted(set(cfgs)), sorted(set(batches))
    for res in resolutions:
        spec.check_resolution(res)
    rows: list[dict[str, Any]] = []
    op_tables: list[pd.DataFrame] = []

    def count(
        fn: Callable[[], Any], where: list[tuple[int, bool]], batch: int, comp: str, stage: str
    ) -> OpCount:
        """Count one call; file its ops under every (resolution, cfg) it stands for."""
        total, ops = count_ops(fn)
        for res, cfg in where:
            op_tables.append(ops.assign(model=spec.name, resolution=res, cfg=cfg, batch=batch,
                                        stage=stage, component=comp))
        return total

    base = {"model": spec.name, "architecture": spec.architecture, "family": spec.family}
    for comp in spec.text_encoders:
        module = build_component(spec, comp, "meta", dtype)
        n, n_ne = count_parameters(module), non_embedding_parameters(module)
        for cfg in cfgs:
            for batch in batches:
                # Pipelines encode the prompt and, with CFG, the negative prompt in
                # separate calls of ``batch`` prompts each.
                prompts, calls = batch, (2 if cfg else 1)
                kw = families.text_inputs(spec, comp, prompts, "meta")
                where = [(res, cfg) for res in resolutions]
                c = count(lambda kw=kw, m=module: m(**kw), where, batch, comp.name, "text")
                for res in resolutions:
                    rows.append({**base, "resolution": res, "cfg": cfg, "batch": batch,
                                 "stage": "text", "component": comp.name, "params": n,
                                 "params_nonembedding": n_ne, "call_batch": prompts, "calls": calls,
                                 "per": "image", "tokens": comp.seq_len,
                                 "flops_analytic": analytic_flops(comp, n_ne, comp.seq_len, prompts),
                                 **asdict(c)})
        del module
    den = spec.denoiser
    module = build_component(spec, den, "meta", dtype)
    n, n_ne = count_parameters(module), non_embedding_parameters(module)
    for res in resolutions:
        img_tokens, txt_tokens = families.denoiser_tokens(spec, res)
        # One count per distinct call shape: CFG settings that give the same call batch
        # share it (a model may cache per-shape state, e.g. Qwen-Image's RoPE table,
        # so counting the same call twice could differ by a few kernels).
        for batch in batches:
            counted: dict[int, OpCount] = {}
            for cfg in cfgs:
                call_batch = spec.denoiser_call_batch(batch, cfg)
                if call_batch not in counted:
                    same = [c for c in cfgs if spec.denoiser_call_batch(batch, c) == call_batch]
                    kw = families.denoiser_inputs(spec, res, call_batch, "meta", dtype)
                    counted[call_batch] = count(lambda kw=kw, m=module: m(**kw), [(res, c) for c in same],
                                                batch, den.name, "denoise")
                c = counted[call_batch]
                joint = img_tokens + (txt_tokens if spec.architecture != "unet" else 0)
                rows.append({**base, "resolution": res, "cfg": cfg, "batch": batch,
                             "stage": "denoise", "component": den.name, "params": n,
                             "params_nonembedding": n_ne, "call_batch": call_batch,
                             "calls": spec.denoiser_calls_per_step(cfg), "per": "step",
                             "tokens": joint,
                             "flops_analytic": analytic_flops(den, n_ne, joint, call_batch),
                             **asdict(c)})
    del module
    vae_spec = spec.vae
    module = build_component(spec, vae_spec, "meta", dtype)
    n = count_parameters(module)
    decoder_n = sum(
        p.numel() for name, p in module.named_parameters() if not name.startswith(("encoder", "quant"))
    )
    for res in resolutions:
        side = families.latent_side(spec, res)
        for batch in batches:
            latents = families.vae_latents(spec, res, batch, "meta", dtype)
            where = [(res, cfg) for cfg in cfgs]
            c = count(lambda z=latents, m=module: m.decode(z), where, batch, vae_spec.name, "vae")
            for cfg in cfgs:
                rows.append({**base, "resolution": res, "cfg": cfg, "batch": batch,
                             "stage": "vae", "component": vae_spec.name, "params": n,
                             "params_nonembedding": decoder_n, "call_batch": batch, "calls": 1,
                             "per": "image", "tokens": side * side,
                             "flops_analytic": analytic_flops(vae_spec, decoder_n, side * side, batch),
                             **asdict(c)})
    frame = pd.DataFrame(rows, columns=FLOPS_COLUMNS)
    frame = frame.sort_values(["resolution", "cfg", "batch", "stage", "component"], ignore_index=True)
    ops = pd.concat(op_tables, ignore_index=True)[OPS_COLUMNS]
    return frame, ops


def per_image_totals(flops: pd.DataFrame, steps: int) -> pd.DataFrame:
    """FLOPs, kernels and bytes per image at ``steps`` steps, by (model, res, cfg, batch)."""
    mult = flops["calls"] * flops["per"].map({"image": 1, "step": steps})
    scaled = flops.assign(
        flops=flops["flops"] * mult, kernels=flops["kernels"] * mult, bytes=flops["bytes"] * mult
    )
    keys = ["model", "resolution", "cfg", "batch"]
    return scaled.groupby(keys, as_index=False)[["flops", "kernels", "bytes"]].sum()
