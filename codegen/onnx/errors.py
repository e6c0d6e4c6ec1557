"""Errors of the ONNX front end: every one is a single line naming the node, its op type and what would work."""

from __future__ import annotations

from typing import Any

from mcuformer.errors import McuformerError

# Op types the front end can read (anything else fails at once, naming the first such node).
SUPPORTED_OPS = (
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "DequantizeLinear", "Div", "Dropout", "Equal",
    "Erf", "Expand", "Flatten", "Gather", "Gelu", "Gemm", "Identity", "LayerNormalization", "MatMul", "Mul", "Pow",
    "QuantizeLinear", "Range", "Reciprocal", "ReduceMean", "Reshape", "Shape", "Slice", "Softmax", "Split", "Sqrt",
    "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Where",
)  # fmt: skip

# The structure the front end maps onto mcuformer's ViT, quoted in structural errors.
SUPPORTED_STRUCTURE = (
    "a ViT: patch embedding (Conv with kernel = stride, or patch Reshape/Transpose + MatMul), class token or "
    "mean pooling, pre-norm blocks of LayerNorm (node or decomposed) -> qkv MatMul/Gemm -> softmax attention "
    "-> proj, LayerNorm -> fc1 -> GELU (node, erf or tanh form) -> fc2, residual adds, final LayerNorm, linear head"
)


class OnnxImportError(McuformerError):
    """An ONNX model the front end cannot map onto mcuformer's ViT (one line: node, op type, alternatives)."""


class MatchError(Exception):
    """A pattern did not match at `node`; the front end turns the first one it cannot recover from into an error."""

    def __init__(self, node: Any, reason: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason

    def message(self) -> str:
        if self.node is None:
            return f"{self.reason}; supported: {SUPPORTED_STRUCTURE}"
        return f"node {describe(self.node)} is not supported: {self.reason}; supported: {SUPPORTED_STRUCTURE}"


def describe(node: Any) -> str:
    """`name (OpType)` of an ONNX node (exporters leave some names empty: then its first output)."""
    return f"{node.name or node.output[0]} ({node.op_type})"


def unsupported_op(node: Any) -> OnnxImportError:
    return OnnxImportError(
        f"node {describe(node)} is not supported by the ONNX front end (op type {node.op_type}); "
        f"supported op types: {', '.join(SUPPORTED_OPS)}"
    )
