"""The ``.bnn`` file: a trained binary network with its binary layers as packed bits.

A safetensors file (nothing is pickled) whose metadata key ``recu_bnn`` holds a JSON
manifest; docs/export.md describes the layout. For every binary layer ``L``:
``L.bits`` (int32 words carrying the uint32 bit pattern, shape (out, words)), ``L.scale``
and ``L.bias`` (float64, per output channel: alpha, with the following BatchNorm folded in
where that is exact). Every other tensor (full-precision stem, classifier, shortcuts, the
BatchNorms that were not folded, RPReLU's parameters) is stored as it was trained, in
float32. A layer with ReActNet's RSign also stores ``L.threshold`` (float32, per input
channel): the packed layer takes the sign bits of x - threshold. Layer options that a
1-bit engine cannot run are refused by ``check_exportable`` with a ValueError naming them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from recu_core.checkpoint import (
    NETWORKS_REVISION,
    library_versions,
    load_checkpoint,
    upgrade_manifest,
)
from recu_core.config import InferenceEngine, TrainConfig
from recu_core.export.bits import WORD_BITS, as_int32, pack_bits, sign_bits
from recu_core.export.engines import resolve
from recu_core.export.packed_layers import PackedBinaryConv2d, PackedBinaryLinear
from recu_core.layers import BinaryConv2d, BinaryLinear, binary_layers
from recu_core.models import create_model
from recu_core.models.blocks import ResidualBlock

FORMAT, VERSION, META_KEY = "recu-bnn", 1, "recu_bnn"
BIT_LAYOUT = {
    "word_bits": WORD_BITS,
    "word_dtype": "int32 tensor holding the uint32 bit pattern",
    "element_order": "row-major over (in_channels, kernel_h, kernel_w) of each output filter",
    "bit_order": "element k is bit k % 32 (least significant first) of word k // 32",
    "bit_value": "1 = -1 (sign bit set), 0 = +1; unused bits of the last word are 0",
}


def _pair(value: Any) -> tuple[int, int]:
    first, second = value
    return int(first), int(second)


def _get(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(_get(model, parent) if parent else model, leaf, module)


def _following_batchnorm(model: nn.Module) -> dict[str, tuple[str, bool]]:
    """conv name -> (BatchNorm name, direct): the BatchNorm applied to its output, directly
    or (``direct=False``) after a max-pool, which commutes only with a positive scale."""
    found: dict[str, tuple[str, bool]] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, ResidualBlock):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
                found[prefix + conv] = (prefix + bn, True)
        elif isinstance(module, nn.Sequential):
            kids = list(module.named_children())
            for i, (child, layer) in enumerate(kids):
                if not isinstance(layer, BinaryConv2d):
                    continue
                after = [m for _, m in kids[i + 1 : i + 3]]
                if after and isinstance(after[0], nn.BatchNorm2d):
                    found[prefix + child] = (prefix + kids[i + 1][0], True)
                elif (
                    len(after) == 2
                    and isinstance(after[0], nn.MaxPool2d)
                    and isinstance(after[1], nn.BatchNorm2d)
                ):
                    found[prefix + child] = (prefix + kids[i + 2][0], False)
    return found


REAL_WEIGHTS_REFUSAL = "stage-1 models have real weights: export the stage-2 job"


def check_exportable(model: nn.Module) -> None:
    """Refuse, with a ValueError naming the option, a model the .bnn engines cannot run
    exactly: one whose binary layers keep real weights (``weights="real"``, stage 1)."""
    for name, layer in binary_layers(model):
        if layer.options.weights == "real":
            raise ValueError(f"{REAL_WEIGHTS_REFUSAL} (binary_options.weights='real', {name})")


@torch.no_grad()
def pack_model(model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` (eval) with every binary layer packed; (packed model, layers)."""
    check_exportable(model)
    packed_model = copy.deepcopy(model).eval()
    following = _following_batchnorm(packed_model)
    layers: dict[str, Any] = {}
    for name, layer in binary_layers(packed_model):
        wb = layer.binary_weight()
        out = wb.shape[0]
        bits = pack_bits(sign_bits(wb.reshape(out, -1)), axis=1)
        scale = (
            layer.alpha.double().reshape(out)
            if layer.alpha is not None
            else torch.ones(out).double()
        )
        bias = layer.bias.double() if layer.bias is not None else torch.zeros(out).double()
        folded = None
        if name in following:
            bn_name, direct = following[name]
            bn = _get(packed_model, bn_name)
            assert isinstance(bn, nn.BatchNorm2d)
            assert bn.weight is not None
            assert bn.bias is not None
            assert bn.running_var is not None
            assert bn.running_mean is not None
            inv = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            folded_scale = scale * inv
            if direct or bool((folded_scale > 0).all()):
                scale = folded_scale
                bias = bn.bias.double() + (bias - bn.running_mean.double()) * inv
                folded = bn_name
                _set(packed_model, bn_name, nn.Identity())
        new: PackedBinaryConv2d | PackedBinaryLinear
        threshold = layer.threshold is not None
        if isinstance(layer, BinaryConv2d):
            geometry = {
                "kind": "conv2d",
                "in_channels": layer.in_channels,
                "out_channels": layer.out_channels,
                "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride),
                "padding": list(layer.padding),
            }
            if layer.groups != 1 or layer.dilation != (1, 1):
                raise ValueError(f"{name}: grouped or dilated binary convs are not exportable")
            new = PackedBinaryConv2d(
                layer.in_channels,
                layer.out_channels,
                _pair(layer.kernel_size),
                _pair(layer.stride),
                _pair(layer.padding),
                threshold=threshold,
            )
        else:
            assert isinstance(layer, BinaryLinear)
            geometry = {
                "kind": "linear",
                "in_features": layer.in_features,
                "out_features": layer.out_features,
            }
            new = PackedBinaryLinear(layer.in_features, layer.out_features, threshold=threshold)
        new.bits.copy_(as_int32(bits))
        new.scale.copy_(scale)
        new.bias.copy_(bias)
        if layer.threshold is not None and new.threshold is not None:
            new.threshold.copy_(layer.threshold)
        _set(packed_model, name, new)
        layers[name] = {
            **geometry,
            "words": int(bits.shape[1]),
            "folded_batchnorm": folded,
            "threshold": threshold,
        }
    return packed_model, layers


def export_model(
    model: nn.Module,
    config: TrainConfig,
    dataset_shape: dict[str, int],
    *,
    source_sha256: str | None = None,
    run: dict[str, Any] | None = None,
) -> bytes:
    """The ``.bnn`` bytes of a trained binary ``model``; ``run``: the reproducibility
    manifest of the run that trained it (``recu_core.manifest.RunManifest``), carried on."""
    if not binary_layers(model):
        raise ValueError("the model has no binary layers: nothing to pack")
    packed, layers = pack_model(model)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model": config.model,
        "config": config.model_dump(mode="json"),
        "dataset_shape": dataset_shape,
        "source_sha256": source_sha256,
        "bit_layout": BIT_LAYOUT,
        "layers": layers,
        "networks": NETWORKS_REVISION,
        "versions": library_versions(),
        **({} if run is None else {"run": run}),
    }
    tensors = {k: v.detach().contiguous() for k, v in packed.state_dict().items()}
    return save_safetensors(tensors, metadata={META_KEY: json.dumps(manifest)})


def export_checkpoint(path: str | Path, *, expected_sha256: str | None = None) -> bytes:
    """Export a training checkpoint (its sha256 checked when given, recorded always)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise ValueError(f"checkpoint {path} has sha256 {sha}, expected {expected_sha256}")
    from recu_core.train import load_trained_model

    ckpt = load_checkpoint(path)
    model = load_trained_model(ckpt)
    config = TrainConfig.model_validate(ckpt.manifest["config"])
    return export_model(
        model,
        config,
        ckpt.manifest["dataset_shape"],
        source_sha256=sha,
        run=ckpt.manifest.get("run"),
    )


def read_bnn(data: bytes) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, manifest) of a ``.bnn`` file's bytes; ValueError for anything else."""
    from safetensors import SafetensorError

    try:
        tensors = load_safetensors(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError) as err:
        raise ValueError(f"not a .bnn file: {err}") from None
    if META_KEY not in meta:
        raise ValueError("not a .bnn file: no recu_bnn manifest")
    manifest = upgrade_manifest(json.loads(meta[META_KEY]))
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(
            f"unsupported .bnn format {manifest.get('format')} {manifest.get('version')}"
        )
    return tensors, manifest


def load_packed_model(
    source: str | Path | bytes, *, engine: InferenceEngine | str = InferenceEngine.FAST
) -> nn.Module:
    """The packed network of a ``.bnn`` file, ready for inference (eval mode), its binary
    layers on ``engine`` (``fast`` falls back to ``reference`` with an
    ``EngineFallbackWarning`` naming the reason where Numba cannot run). On the fast
    engine the model takes its input channels-last, so that the float layers between the
    binary ones (oneDNN) and the kernels share one layout and nothing is reordered."""
    engine = resolve(engine)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    tensors, manifest = read_bnn(data)
    config = TrainConfig.model_validate(manifest["config"])
    shape = manifest["dataset_shape"]
    model = create_model(
        config.model,
        num_classes=shape["num_classes"],
        in_channels=shape["in_channels"],
        image_size=shape["image_size"],
        binary=True,
        options=config.binary_options,
    )
    for name, spec in manifest["layers"].items():
        new: nn.Module
        if spec["kind"] == "conv2d":
            new = PackedBinaryConv2d(
                spec["in_channels"],
                spec["out_channels"],
                _pair(spec["kernel_size"]),
                _pair(spec["stride"]),
                _pair(spec["padding"]),
                threshold=spec.get("threshold", False),
            )
        else:
            new = PackedBinaryLinear(
                spec["in_features"], spec["out_features"], threshold=spec.get("threshold", False)
            )
        _set(model, name, new)
        if spec["folded_batchnorm"]:
            _set(model, spec["folded_batchnorm"], nn.Identity())
    model.load_state_dict(tensors, strict=True)
    for module in model.modules():
        if isinstance(module, PackedBinaryConv2d | PackedBinaryLinear):
            module.engine = engine
    if engine is InferenceEngine.FAST:
        model.register_forward_pre_hook(_channels_last)
    return model.eval()


def _channels_last(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    x, *rest = args
    if isinstance(x, Tensor) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)
