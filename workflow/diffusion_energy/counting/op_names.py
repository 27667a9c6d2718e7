"""Names of the ops in the per-op table (``results/flops_ops.parquet``), readable without torch.

Most ops are named after their aten function (``mm.default``, ``convolution.default``); a fused
attention kernel is named with its head dimension, which the roofline model needs.
"""

from __future__ import annotations


def attention_op(head_dim: int) -> str:
    """The op name of a fused attention kernel: ``sdpa`` and its head dimension, e.g. ``sdpa[d=64]``.

    Why the head dimension: a fused attention kernel computes one exponential per score next to 4 x d
    tensor-core FLOPs, and the exponentials run on far slower units (an H100 has ~1/256 of its
    matrix throughput for them), so attention with small heads (SD 1.5's 40) runs at a much smaller
    share of the peak than with large ones (FLUX.1-dev's 128) (Shah et al., FlashAttention-3).
    """
    return f"sdpa[d={head_dim}]"


def attention_head_dim(op: str) -> int | None:
    """The head dimension of an ``attention_op`` name (None for any other op, and plain ``sdpa``)."""
    if not op.startswith("sdpa[d=") or not op.endswith("]"):
        return None
    return int(op[len("sdpa[d="):-1])
