"""Export equivariant networks to plain torch (group convs become ``nn.ConvNd`` with expanded filters) and to ONNX
with the admissible input sizes in its metadata.

:func:`export`, :func:`replace_with_plain`, :func:`scriptable` and :class:`ScriptsAsExport` live in
:mod:`monai_equivariant.layers.plain` (the core: networks use them without importing ``utils``); they are
re-exported here.
"""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch.nn as nn

from monai_equivariant.layers.plain import ScriptsAsExport, export, replace_with_plain, scriptable

__all__ = [
    "ScriptsAsExport",
    "add_onnx_metadata",
    "check_onnx_input",
    "export",
    "export_onnx",
    "input_requirements",
    "replace_with_plain",
    "scriptable",
]


_META_PREFIX = "monai_equivariant."


def input_requirements(net: nn.Module) -> dict[str, str]:
    """What an input of ``net`` (or of its :func:`export`) must look like, as strings for model metadata:
    ``spatial_dims``, ``in_channels`` and ``size_multiple`` (every spatial size must be divisible by it), where the
    network states them."""
    found = {}
    for key in ("spatial_dims", "in_channels", "size_multiple"):
        value = getattr(net, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            found[key] = str(value)
    return found


def add_onnx_metadata(model, net: nn.Module):
    """Record :func:`input_requirements` of ``net`` in an ONNX model's ``metadata_props`` (keys prefixed with
    ``monai_equivariant.``): the size check of the network's forward does not survive ONNX export (a trace records
    one outcome), so deployments read it back with :func:`check_onnx_input`. ``model`` is an ``onnx.ModelProto``
    (changed in place and returned) or a path (rewritten)."""
    import onnx

    proto = onnx.load(model) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else model
    keep = [p for p in proto.metadata_props if not p.key.startswith(_META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in input_requirements(net).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = _META_PREFIX + key, value
    if proto is not model:
        onnx.save(proto, model)
    return proto


def check_onnx_input(model, shape) -> None:
    """Raise ValueError, naming what was expected, unless an input of ``shape`` (B, C, *spatial) meets the
    requirements :func:`add_onnx_metadata` recorded in ``model`` (an ``onnx.ModelProto``, a path, or an
    onnxruntime ``InferenceSession``).

    Every entry of ``shape`` must be an integer ≥ 1 (a batch or size of 0, a negative size or 64.5 is refused). A
    model without these metadata (an ONNX file written by ``torch.onnx.export`` alone) raises ValueError too:
    nothing could be checked, and passing silently would promise a check that did not happen.
    """
    if hasattr(model, "get_modelmeta"):  # onnxruntime session
        props = dict(model.get_modelmeta().custom_metadata_map)
    else:
        import onnx

        proto = onnx.load(model) if not hasattr(model, "metadata_props") else model
        props = {p.key: p.value for p in proto.metadata_props}
    need = {k[len(_META_PREFIX):]: int(v) for k, v in props.items() if k.startswith(_META_PREFIX)}
    if not need:
        raise ValueError(
            f"{_describe_model(model)} has no monai_equivariant metadata (no '{_META_PREFIX}*' entries in its "
            "metadata_props), so no input can be checked against it: write it with export_onnx(net, path, example), "
            "or add the metadata to an existing file with add_onnx_metadata(path, net)"
        )
    shape = _check_shape(shape)
    if "spatial_dims" in need and len(shape) != need["spatial_dims"] + 2:
        raise ValueError(
            f"expected a (B, C, *spatial) input with {need['spatial_dims']} spatial dims, got shape {shape}"
        )
    if "in_channels" in need and (len(shape) < 2 or shape[1] != need["in_channels"]):
        raise ValueError(f"expected {need['in_channels']} input channels, got shape {shape}")
    multiple = need.get("size_multiple", 1)
    bad = [s for s in shape[2:] if s % multiple]
    if bad:
        nearest = sorted({s // multiple * multiple for s in bad} | {-(-s // multiple) * multiple for s in bad})
        raise ValueError(
            f"spatial sizes {shape[2:]} are not all multiples of {multiple} (the product of the down-sampling "
            f"strides; exact equivariance needs it): crop or pad the input, e.g. to "
            f"{' or '.join(str(n) for n in nearest if n > 0)}"
        )


def _describe_model(model) -> str:
    """How an error names ``model``: the file for a path, else what kind of object it is."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        return f"ONNX file {os.fsdecode(model)!r}"
    path = getattr(model, "_model_path", None)  # onnxruntime sessions made from a file keep it
    if isinstance(path, str) and path:
        return f"ONNX model {path!r} (an onnxruntime session)"
    return f"the ONNX model ({type(model).__name__})"


def _check_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple of ints ≥ 1; ValueError naming the first entry that is not one (0, -4, 64.5, "64")."""
    try:
        entries = list(shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of ints (B, C, *spatial), got {shape!r}") from None
    names = ["batch", "channels"] + [f"spatial size {i}" for i in range(len(entries) - 2)]
    for name, value in zip(names, entries):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(
                f"shape {tuple(entries)!r}: {name} {value!r} is not an integer ≥ 1; expected (B, C, *spatial) with "
                "every entry a positive integer"
            )
    return tuple(int(v) for v in entries)


def export_onnx(net: nn.Module, path, example, dynamo: bool = False, **kwargs):
    """Write :func:`export` of ``net`` to the ONNX file ``path`` with the admissible input sizes in its metadata
    (:func:`add_onnx_metadata`; check inputs with :func:`check_onnx_input` before running it).

    ``example`` is a (B, C, *spatial) tensor. The legacy exporter (``dynamo=False``, default) makes the batch and
    spatial axes dynamic, input named ``"input"``, output ``"output"``; ``dynamo=True`` uses torch's dynamo
    exporter (shapes as given unless ``dynamic_shapes`` is passed). ``kwargs`` go to ``torch.onnx.export``.
    Returns ``path``.
    """
    import torch

    plain = export(net)
    if not dynamo:
        axes = {0: "batch", **{i: f"spatial{i - 2}" for i in range(2, example.dim())}}
        kwargs.setdefault("input_names", ["input"])
        kwargs.setdefault("output_names", ["output"])
        kwargs.setdefault("dynamic_axes", {"input": axes})
    torch.onnx.export(plain, (example,), path, dynamo=dynamo, **kwargs)
    add_onnx_metadata(path, net)
    return path
