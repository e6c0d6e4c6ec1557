"""ONNX model -> mcuformer VisionTransformer (checked against the ONNX model in fp32) -> calibrated model.pt -> C.

The matched weights are loaded into mcuformer's own ViT, whose output must reproduce the ONNX model's on probe
images (onnx's reference evaluator); only then is it calibrated and compiled like any model.pt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from onnx.reference import ReferenceEvaluator

from mcuformer.arch import ArchConfig, ArchError, LayerRanks
from mcuformer.boards import Board
from mcuformer.checkpoint import DatasetMeta, ModelFile, save_model
from mcuformer.codegen.compiler import DEFAULT_BUDGETS, DEFAULT_SCHEDULE, Budgets, CompiledModel, compile_model
from mcuformer.codegen.onnx import metadata
from mcuformer.codegen.onnx.errors import MatchError, OnnxImportError
from mcuformer.codegen.onnx.graph import OnnxGraph, load_graph
from mcuformer.codegen.onnx.layers import Linear, Norm
from mcuformer.codegen.onnx.patterns import VitWeights, match_vit
from mcuformer.codegen.onnx.ranges import calibration_from_qdq
from mcuformer.model import VisionTransformer
from mcuformer.quant.ptq import Calibration, calibrate

CALIBRATION_IMAGES = 512  # as many as training calibrates on
VERIFY_IMAGES = 3
VERIFY_TOLERANCE = 1e-3  # relative to the largest logit: float32 summation order differs, structure must not


@dataclass(frozen=True)
class ImportedModel:
    model: VisionTransformer
    graph: OnnxGraph
    max_error: float  # largest |logit difference| to the ONNX model on the probe images (nan: not checked)
    taps: dict[str, list[str]]  # calibration tap -> the ONNX tensors holding it


def _tensor(a: np.ndarray, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    t = torch.tensor(np.asarray(a, np.float64), dtype=torch.float32)
    return t.reshape(shape) if shape is not None else t


def _linear_state(prefix: str, linear: Linear) -> dict[str, torch.Tensor]:
    state = {f"{prefix}.u.weight": _tensor(linear.weight), f"{prefix}.u.bias": _tensor(linear.bias)}
    if linear.v is not None:
        state[f"{prefix}.v.weight"] = _tensor(linear.v)
    return state


def _norm_state(prefix: str, norm: Norm) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": _tensor(norm.weight), f"{prefix}.bias": _tensor(norm.bias)}


def _rank(linear: Linear) -> int | None:
    return None if linear.v is None else int(linear.v.shape[0])


def build_arch(w: VitWeights, name: str) -> ArchConfig:
    norms = [n for b in w.blocks for n in (b.norm1, b.norm2)] + [w.norm]
    eps = {n.eps for n in norms}
    if len(eps) != 1:
        raise OnnxImportError(f"the LayerNorms use different epsilons {sorted(eps)}; supported: one epsilon for all")
    gelus = {b.gelu for b in w.blocks}
    if len(gelus) != 1:
        raise OnnxImportError("the blocks mix erf and tanh GELU; supported: one GELU form for all blocks")
    dim = w.patch_weight.shape[0]
    try:
        return ArchConfig(
            image_size=w.image_size, channels=w.channels, patch_size=w.patch_size, embed_dim=dim,
            depth=len(w.blocks), num_heads=tuple(b.heads for b in w.blocks),
            mlp_ratios=tuple(b.fc1.weight.shape[0] / dim for b in w.blocks),
            ranks=tuple(LayerRanks(_rank(b.qkv), _rank(b.proj), _rank(b.fc1), _rank(b.fc2)) for b in w.blocks),
            num_classes=w.head.weight.shape[0], pool="cls" if w.pool == "cls" else "mean", name=name,
            norm_eps=eps.pop(), gelu="tanh" if gelus.pop() == "tanh" else "erf",
        )  # fmt: skip
    except ArchError as err:
        raise OnnxImportError(f"the ONNX model maps to no valid mcuformer architecture: {err}") from None


def build_model(
    w: VitWeights, name: str, pixel_mean: tuple[float, ...] | None, pixel_std: tuple[float, ...] | None
) -> VisionTransformer:
    """mcuformer's ViT holding the matched weights. The ONNX input is (pixel - pixel_mean) / pixel_std."""
    arch = build_arch(w, name)
    m_u = np.asarray(pixel_mean if pixel_mean is not None else (0.0,) * arch.channels, np.float64)
    s_u = np.asarray(pixel_std if pixel_std is not None else (1.0,) * arch.channels, np.float64)
    if m_u.shape != (arch.channels,) or s_u.shape != (arch.channels,) or not np.all(s_u != 0):
        raise OnnxImportError(f"--pixel-mean/--pixel-std need {arch.channels} value(s), std non-zero")
    scale, shift = w.pixel_scale / s_u, w.pixel_shift - w.pixel_scale * m_u / s_u  # image -> patch embedding input
    if not np.all(scale != 0):
        raise OnnxImportError("the input normalisation multiplies a channel by zero")
    mean, std = -shift / scale + 0.0, 1.0 / scale  # + 0.0: no -0.0 means in model files
    model = VisionTransformer(arch, tuple(mean.tolist()), tuple(std.tolist()))
    dim = arch.embed_dim
    if w.pos_embed.shape != (arch.num_tokens, dim):
        raise OnnxImportError(f"position embedding has shape {list(w.pos_embed.shape)}, the tokens are "
                              f"[{arch.num_tokens}, {dim}]; supported: one position per token")  # fmt: skip
    state = {
        "pixel_mean": _tensor(mean, (1, -1, 1, 1)),
        "pixel_std": _tensor(std, (1, -1, 1, 1)),
        "patch_embed.proj.weight": _tensor(w.patch_weight),
        "patch_embed.proj.bias": _tensor(w.patch_bias),
        "pos_embed": _tensor(w.pos_embed, (1, arch.num_tokens, dim)),
        **_norm_state("norm", w.norm),
        "head.weight": _tensor(w.head.weight),
        "head.bias": _tensor(w.head.bias),
    }
    if w.cls_token is not None:
        state["cls_token"] = _tensor(w.cls_token, (1, 1, dim))
    for i, b in enumerate(w.blocks):
        p = f"blocks.{i}"
        state |= _norm_state(f"{p}.norm1", b.norm1) | _norm_state(f"{p}.norm2", b.norm2)
        state |= _linear_state(f"{p}.attn.qkv", b.qkv) | _linear_state(f"{p}.attn.proj", b.proj)
        state |= _linear_state(f"{p}.mlp.fc1", b.fc1) | _linear_state(f"{p}.mlp.fc2", b.fc2)
    model.load_state_dict(state)
    return model.eval()


def _verify(g: OnnxGraph, model: VisionTransformer, m_u: np.ndarray, s_u: np.ndarray, path: Path) -> float:
    rng = np.random.default_rng(1)
    pixels = rng.random((VERIFY_IMAGES, *g.input_shape[1:]), dtype=np.float32)
    evaluator = ReferenceEvaluator(g.model)
    onnx_in = ((pixels - m_u[None, :, None, None]) / s_u[None, :, None, None]).astype(np.float32)
    expected = np.concatenate([np.asarray(list(evaluator.run(None, {g.input: img[None]}))[0]).reshape(1, -1)
                               for img in onnx_in])  # fmt: skip
    with torch.no_grad():
        got = model(torch.from_numpy(pixels)).numpy()
    if got.shape != expected.shape:
        raise OnnxImportError(f"the ViT read from {path} gives logits {got.shape[1:]}, the ONNX model "
                              f"{expected.shape[1:]}: the graph holds an op the front end does not map")  # fmt: skip
    err = float(np.abs(got - expected).max())
    if err > VERIFY_TOLERANCE * max(1.0, float(np.abs(expected).max())):
        raise OnnxImportError(f"the ViT read from {path} differs from the ONNX model by {err:.3g} on probe images "
                              "(largest logit {:.3g}): the graph holds an op or layout the front end does not map"
                              .format(float(np.abs(expected).max())))  # fmt: skip
    return err


def read_onnx(
    path: str | Path,
    pixel_mean: tuple[float, ...] | None = None,
    pixel_std: tuple[float, ...] | None = None,
    name: str | None = None,
) -> ImportedModel:
    """Match an ONNX ViT and rebuild it as mcuformer's model; fp32 models are checked against the ONNX outputs."""
    path = Path(path)
    graph = load_graph(path)
    try:
        weights = match_vit(graph)
    except MatchError as err:
        raise OnnxImportError(err.message()) from None
    arch_name = name or metadata.loads(graph.metadata, metadata.ARCH_NAME) or path.stem
    model = build_model(weights, str(arch_name), pixel_mean, pixel_std)
    if graph.qparams:  # a QDQ model's outputs are fake-quantized: its weights were checked by the match
        return ImportedModel(model, graph, float("nan"), weights.taps)
    channels = graph.input_shape[1]
    m_u = np.asarray(pixel_mean or (0.0,) * channels, np.float64)
    s_u = np.asarray(pixel_std or (1.0,) * channels, np.float64)
    return ImportedModel(model, graph, _verify(graph, model, m_u, s_u, path), weights.taps)


def calibration_pixels(
    dataset: str, arch: ArchConfig, data_dir: str | Path | None, count: int
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The first `count` training images of `dataset` at the model's size, and the dataset's class names."""
    from mcuformer.data import load_dataset, pixels_to_tensor

    data = load_dataset(dataset, "train", data_dir)
    if data.channels != arch.channels:
        raise OnnxImportError(f"calibration dataset {dataset} has {data.channels} channel(s), the ONNX model "
                              f"takes {arch.channels}; pass a --calib dataset with {arch.channels}")  # fmt: skip
    data = data.subset(np.arange(min(count, len(data)))).resized((arch.image_size, arch.image_size))
    return pixels_to_tensor(data.images), data.classes


def import_onnx(
    path: str | Path,
    calib: str | None = None,
    calib_dir: str | Path | None = None,
    calib_images: int = CALIBRATION_IMAGES,
    pixel_mean: tuple[float, ...] | None = None,
    pixel_std: tuple[float, ...] | None = None,
    name: str | None = None,
) -> ModelFile:
    """An ONNX ViT as a calibrated ModelFile: calibrated on `calib`, else on the ranges our exporter stored,
    else on the scales of a QDQ model's quantization pairs."""
    imported = read_onnx(path, pixel_mean, pixel_std, name)
    model, meta = imported.model, imported.graph.metadata
    stored = metadata.loads(meta, metadata.CALIBRATION)
    ds = metadata.loads(meta, metadata.DATASET) or {}
    classes = tuple(ds.get("classes") or (str(i) for i in range(model.arch.num_classes)))
    calibration: Calibration
    if calib is not None:
        pixels, calib_classes = calibration_pixels(calib, model.arch, calib_dir, calib_images)
        calibration = calibrate(model, pixels)
        classes = calib_classes if len(calib_classes) == model.arch.num_classes else classes
    elif stored is not None:
        calibration = {k: (float(v[0]), float(v[1])) for k, v in stored.items()}
    elif imported.graph.qparams:
        required = list(calibrate(model, torch.zeros(1, *imported.graph.input_shape[1:])))  # every tap, in order
        calibration = calibration_from_qdq(imported.graph, imported.taps, required)
    else:
        raise OnnxImportError(f"{path} carries no calibration ranges: pass --calib <dataset> (fashion-mnist, "
                              "cifar10, cifar100, imagefolder) to calibrate on its training images")  # fmt: skip
    dataset_name = calib or ds.get("name") or "unknown"
    mean = tuple(float(v) for v in model.pixel_mean.reshape(-1))
    std = tuple(float(v) for v in model.pixel_std.reshape(-1))
    stored_mean, stored_std = ds.get("mean"), ds.get("std")
    if stored_mean and stored_std and np.float32(stored_mean).tolist() == list(mean) and \
            np.float32(stored_std).tolist() == list(std):  # fmt: skip
        mean, std = tuple(stored_mean), tuple(stored_std)  # the dataset's values before float32 rounding
    metrics = {} if np.isnan(imported.max_error) else {"onnx_max_abs_error": imported.max_error}
    return ModelFile(model, calibration, DatasetMeta(dataset_name, mean, std, classes), metrics)


def compile_onnx(
    path: str | Path,
    board: str | Board,
    out_dir: str | Path,
    calib: str | None = None,
    calib_dir: str | Path | None = None,
    calib_images: int = CALIBRATION_IMAGES,
    pixel_mean: tuple[float, ...] | None = None,
    pixel_std: tuple[float, ...] | None = None,
    name: str | None = None,
    schedule: str = DEFAULT_SCHEDULE,
    enforce_budget: bool = True,
    budgets: Budgets = DEFAULT_BUDGETS,
) -> CompiledModel:
    """`mcuformer compile model.onnx`: import, write out_dir/model.pt, then the model.pt compile path."""
    out = Path(out_dir)
    model_file = import_onnx(path, calib, calib_dir, calib_images, pixel_mean, pixel_std, name)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model_file, out / "model.pt")
    return compile_model(out / "model.pt", board, out, name=name, enforce_budget=enforce_budget,
                         schedule=schedule, budgets=budgets)  # fmt: skip
