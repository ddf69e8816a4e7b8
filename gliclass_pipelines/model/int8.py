"""int8 weights on CPU: the GLiClass encoder exported to ONNX and quantized by ONNX Runtime.

``precision="int8"`` is an explicit opt-in. The encoder's matrix multiplications get int8 weights (one
scale per output channel) and int8 activations quantized on the fly; the embeddings, norms, attention
softmax and the whole GLiClass head (projectors, scorer, calibrator) stay float32 in torch. The
feed-forward output projections (``KEEP_FLOAT32``: the MatMuls that read more features than the hidden
size) stay float32 too: their inputs carry the widest activations, and keeping them float32 cut the
largest score differences by a third to a half for about 15% of the speed (benchmarks/results/int8.md).

ONNX Runtime quantizes activations with one scale per tensor, so the encoder runs each sequence on its
own, unpadded: a text's scores then do not depend on which texts share its batch, as with float32.

The export is checked against the float32 encoder on probe inputs before it is quantized, so a graph
that traced a shape-dependent branch wrongly is refused at load time, never used.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gliclass_pipelines.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "int8")
KEEP_FLOAT32 = "ffn-output"  # which weight MatMuls stay float32: "ffn-output", "none" or "all"
EXPORT_TOLERANCE = 1e-3  # largest hidden-state difference of the float32 export to torch
# probe lengths, cut at the encoder's positions: the first is traced (longer than ModernBERT's 128-token
# local window and DeBERTa's 256 position buckets); the export is checked at all of them
_PROBE_LENGTHS = (300, 1024, 37, 3)
_ALTERNATIVES = (
    "int8 runs on CPU only; on a GPU use precision='float32' with dtype='bfloat16' or 'float16' "
    "(dtype='auto' picks one), or pass device='cpu' to run int8"
)


def check_precision(precision: str | None, device: str | None = "auto", dtype: str | None = "auto") -> str:
    """The precision name, checked alone and against an explicit device and dtype (no torch import)."""
    precision = "float32" if precision is None else str(precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8":
        device = "auto" if device is None else str(device)
        if device not in ("auto", "cpu"):
            raise ConfigError(f"precision='int8' cannot run on device {device!r}: {_ALTERNATIVES}")
        if str(dtype).replace("torch.", "") not in ("None", "auto", "float32"):
            raise ConfigError(
                f"precision='int8' keeps its float parts in float32, so dtype must be 'auto' or 'float32', "
                f"got {dtype!r}; for {dtype} use precision='float32' on a GPU"
            )
    return precision


def precision_device(precision: str, device: str | None) -> str | None:
    """int8 always runs on the CPU: 'auto' becomes 'cpu' (a GPU the engine offers is not used)."""
    if precision == "int8" and device in (None, "auto"):
        return "cpu"
    return device


def quantize(model: Any, *, threads: int | None = None, keep_float32: str = KEEP_FLOAT32) -> Any:
    """Turn a loaded float32 GLiClass uni-encoder (on CPU) into its int8 variant, in place; return it.

    ``model.model.encoder_model`` is replaced by an int8 module (:func:`int8_encoder_class`); the
    float32 encoder's weights are released. ``threads``: ONNX Runtime intra-op threads (default:
    torch's current count). ``keep_float32``: "ffn-output" (the feed-forward output projections),
    "none" or "all" (a float32 graph: for comparisons).
    """
    import torch

    if keep_float32 not in ("ffn-output", "none", "all"):
        raise ConfigError(f"keep_float32 must be 'ffn-output', 'none' or 'all', got {keep_float32!r}")
    _check_quantizable(model)
    inner = model.model
    inner.encoder_model = int8_encoder_class()(
        build_int8_session(inner.encoder_model, model.config, keep_float32),
        threads or torch.get_num_threads(),
    )
    return model


def _check_quantizable(model: Any) -> None:
    import torch

    config = model.config
    unsupported = [
        (config.architecture_type != "uni-encoder", f"architecture {config.architecture_type!r}"),
        (bool(getattr(config, "use_segment_embeddings", False)), "segment embeddings"),
        (bool(getattr(config, "squeeze_layers", False)), "squeeze_layers"),
        (config.encoder_layer_id != -1, "an encoder_layer_id other than -1"),
    ]
    reasons = [what for bad, what in unsupported if bad]
    if reasons:
        raise ConfigError(
            f"precision='int8' supports uni-encoder models reading the last encoder layer; this model has "
            f"{', '.join(reasons)}: use precision='float32'"
        )
    if isinstance(model.model.encoder_model, int8_encoder_class()):
        raise ConfigError("this model is already int8")
    weights = next(model.parameters())
    if weights.device.type != "cpu" or weights.dtype != torch.float32:
        raise ConfigError(
            f"quantize needs the float32 model on the CPU, got {weights.dtype} on {weights.device}; "
            f"{_ALTERNATIVES}"
        )


def has_vnni() -> bool:
    """Whether this CPU multiplies int8 with VNNI. Without it, ONNX Runtime's u8 x s8 kernels add pairs of
    products in 16 bits, which saturate (scores off by up to 0.56 on an AVX2 EPYC), so weights are
    unsigned there (u8 x u8 kernels, no pairwise 16-bit sums)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = info.read(1 << 20)
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def build_int8_session(encoder: Any, config: Any, keep_float32: str = KEEP_FLOAT32) -> bytes:
    """The encoder as a quantized ONNX model (serialized): exported, checked against torch, quantized."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    probes = _probes(config)
    with tempfile.TemporaryDirectory(prefix="gliclass-int8-") as tmp:
        exported, quantized = Path(tmp) / "encoder.onnx", Path(tmp) / "encoder-int8.onnx"
        export_encoder(encoder, probes[0], exported)
        check_export(encoder, exported.read_bytes(), probes)
        excluded = float32_matmuls(exported, config.encoder_config.hidden_size, keep_float32)
        with _quiet_quantizer():
            quantize_dynamic(
                exported,
                quantized,
                weight_type=QuantType.QInt8 if has_vnni() else QuantType.QUInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                nodes_to_exclude=excluded,
            )
        return quantized.read_bytes()


def _probes(config: Any) -> list[Any]:
    """Fixed token ids of a few lengths (within the encoder's position limit), one sequence each."""
    import torch

    encoder_config = config.encoder_config
    limit = getattr(encoder_config, "max_position_embeddings", 512) or 512
    generator = torch.Generator().manual_seed(0)
    low = min(5, encoder_config.vocab_size - 1)
    lengths = dict.fromkeys(min(n, limit) for n in _PROBE_LENGTHS)
    return [torch.randint(low, encoder_config.vocab_size, (1, n), generator=generator) for n in lengths]


def _hidden_states(encoder: Any) -> Any:
    """A traceable module returning only the encoder's last hidden states."""
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.encoder(input_ids, attention_mask=attention_mask)[0]

    return HiddenStates().eval()


def export_encoder(encoder: Any, probe: Any, path: Path) -> None:
    """torch.onnx.export (TorchScript, opset 17), dynamic batch and sequence axes."""
    import torch

    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches; check_export tests them
        torch.onnx.export(
            _hidden_states(encoder),
            (probe, torch.ones_like(probe)),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={**axes, "hidden": {0: "batch", 1: "sequence"}},
        )


def check_export(encoder: Any, onnx_model: bytes, probes: list[Any]) -> None:
    """Refuse an export whose float32 hidden states differ from torch's on any probe length."""
    import numpy as np
    import torch

    session = _session(onnx_model, 1)
    for ids in probes:
        with torch.no_grad():
            expected = encoder(ids, attention_mask=torch.ones_like(ids))[0].numpy()
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy())})[0]
        worst = float(np.abs(got - expected).max())
        if not worst <= EXPORT_TOLERANCE:
            raise ModelLoadError(
                f"the ONNX export of this encoder differs from torch by {worst:.2g} at "
                f"{ids.shape[1]} tokens; precision='int8' cannot be used for it: use precision='float32'"
            )


def float32_matmuls(path: Path, hidden_size: int, keep: str) -> list[str]:
    """Names of the weight MatMuls to leave in float32: a feed-forward output projection is the one
    whose weight (stored in x out) reads more features than the hidden size."""
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {weight.name: tuple(weight.dims) for weight in graph.initializer}
    names = []
    for node in graph.node:
        weight = shapes.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight and (keep == "all" or (keep == "ffn-output" and weight[0] > hidden_size)):
            names.append(node.name)
    return names


def _session(onnx_model: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared cores: do not spin
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs a hint on the root logger for every call; it does not apply here."""
    root, hint = logging.getLogger(), _DropPreprocessHint()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


@functools.cache
def int8_encoder_class() -> type:
    """The torch module class that stands in for the encoder (built on first use: torch loads lazily)."""
    import numpy as np
    import torch

    class Int8Encoder(torch.nn.Module):
        """``(hidden_states,)`` from the int8 ONNX model, one unpadded sequence per call.

        Each text is computed exactly as if it were alone; padding positions get zeros.
        """

        def __init__(self, onnx_model: bytes, threads: int) -> None:
            super().__init__()
            self.threads = threads
            self.session = _session(onnx_model, threads)
            self.hidden_size = int(self.session.get_outputs()[0].shape[-1])

        def forward(self, input_ids: Any, attention_mask: Any = None, **options: Any) -> Any:
            if options.get("output_hidden_states") or options.get("inputs_embeds") is not None:
                raise ConfigError("the int8 encoder takes token ids and returns only the last hidden states")
            ids = input_ids.cpu().numpy()
            mask = np.ones_like(ids) if attention_mask is None else attention_mask.cpu().numpy()
            hidden = np.zeros((*ids.shape, self.hidden_size), dtype=np.float32)
            for i in range(ids.shape[0]):
                real = mask[i] != 0
                if real.any():
                    feed = {"input_ids": ids[i : i + 1, real], "attention_mask": mask[i : i + 1, real]}
                    hidden[i, real] = self.session.run(None, feed)[0][0]
            return (torch.from_numpy(hidden),)

    return Int8Encoder
