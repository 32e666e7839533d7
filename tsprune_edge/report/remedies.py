"""What would close a structured variant's shortfall, from which operator kinds fell behind its MAC cut.

Head and neuron pruning shrink the attention projections, the heads and the FFN hidden width; they keep the model
width (d_model), the sequence lengths and the number of graph nodes. The operators that fell behind say which of
those kept the time, and each kind has one lever that would move it."""

from __future__ import annotations

KINDS: dict[str, tuple[str, ...]] = {
    "width": ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
              "SkipSimplifiedLayerNormalization", "BatchNormalization", "InstanceNormalization", "AveragePool",
              "MaxPool", "GlobalAveragePool", "ReduceMean", "ReduceSum"),
    "softmax": ("Softmax", "LogSoftmax"),
    "shape": ("Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherND", "GatherElements", "Split", "Squeeze",
              "Unsqueeze", "Expand", "Tile", "Pad", "Shape", "Cast", "Identity", "Where", "ScatterND"),
    "matmul": ("MatMul", "Gemm", "FusedMatMul", "MatMulNBits", "Conv", "Attention", "MultiHeadAttention"),
}
LEVERS = {
    "width": "layer norms, the series decomposition's moving averages and reductions run over the model width "
             "(d_model), which head and neuron pruning keep: only pruning d_model itself (embedding, residual "
             "stream and norms together) would shrink them; where d_model was pruned too (`--dims ...,width`), "
             "what they keep is their fixed cost per node, which fusing them into neighbouring operators would cut",
    "softmax": "softmax runs over heads x query x key positions: fewer heads shrink it, the window length does not; "
               "it closes only with more heads pruned or a shorter history",
    "shape": "reshapes, transposes, slices, gathers and concats move data at a fixed cost per node: an attention "
             "written without the split-heads reshapes (ONNX Runtime's fused Attention) or fewer, wider layers "
             "would cut them",
    "matmul": "the narrower matrix products run below the GEMM kernel's peak (fixed packing cost per call, "
              "partly filled tiles): widths kept at multiples of 16 and fewer, larger products keep them efficient",
    "elementwise": "elementwise ops (adds, activations, scaling) over the kept d_model width stay as they are: "
                   "they shrink only where their tensor's width was pruned, or when fused into the matmul before them",
    "outside": "time outside kernels is a fixed cost per call and per node (the executor's dispatch, the Python "
               "call): no pruning moves it, as pruning keeps every node; fewer nodes (fused operators) or several "
               "windows per call amortise it",
}
SHARE_WORTH_NAMING = 0.15  # a kind is named when its excess is at least this share of the time lost


def kind_of(op: str) -> str:
    return next((kind for kind, ops in KINDS.items() if op in ops), "elementwise")


def closing_levers(diff: dict) -> list[str]:
    """The levers for the kinds that account for at least SHARE_WORTH_NAMING of the time lost, largest first."""
    excess: dict[str, float] = {}
    for op in diff["ops"]:
        if not op["kept_pace"] and op["excess_us"] > 0:
            kind = kind_of(op["op"])
            excess[kind] = excess.get(kind, 0.0) + op["excess_us"]
    outside = diff["outside"]
    if outside["measurable"] and (outside["excess_us"] or 0) > 0:
        excess["outside"] = outside["excess_us"]
    lost = sum(excess.values())
    if lost <= 0:
        return []
    return [LEVERS[kind] for kind, us in sorted(excess.items(), key=lambda item: -item[1])
            if us / lost >= SHARE_WORTH_NAMING]


def closing_line(diff: dict) -> str | None:
    """One sentence for the explanation, or None when nothing fell behind."""
    if diff["shortfall_us"] <= 0:
        return None
    levers = closing_levers(diff)
    return ("What would close it: " + "; ".join(levers) + ".") if levers else None
