"""Which architecture x scorer x pooling combinations this library runs, and why it refuses the others.

One place read by the load-time check (:func:`unsupported_features`) and by the README's coverage table
(``scripts/coverage_report.py``): a combination is either run at the reference's scores (each one has a
parity test in tests/test_parity_architectures.py or tests/test_parity.py) or refused here, naming it and
the reason measured against the reference gliclass 0.1.21.

Standard library only: the check runs on config.json before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUPPORTED_ARCHITECTURES = (
    "uni-encoder",
    "bi-encoder",
    "bi-encoder-fused",
    "encoder-decoder",
    "encoder-decoder-cls",
)
SUPPORTED_POOLINGS = ("first", "last", "avg", "max", "sum", "rms", "abs_max", "abs_avg", "pass")
SUPPORTED_SCORERS = ("simple", "weighted-dot", "mlp", "hopfield", "cross-attn")
TOKEN_STATE_SCORERS = ("cross-attn",)  # they score a text's token states, which only 'pass' pooling keeps
# the architectures whose reference forward hands the scorer the token states with their mask
PASS_POOLING_ARCHITECTURES = ("uni-encoder", "encoder-decoder")
LAST_TOKEN_ARCHITECTURES = ("encoder-decoder-cls",)  # the reference ignores pooling_strategy there

NOT_YET = {  # defined by the reference, not run here yet
    "decoder-kv": "a decoder backbone scored from its KV cache by a recurrent scorer: no implementation yet",
}
_PASS_MISMATCH = (
    "the cross-attn scorer reads a text's token states, which only pooling 'pass' keeps, and every other "
    "scorer takes one vector per text: the reference raises on the mix"
)
_LABEL_ENCODER_PASS = (
    "its label encoder pools with the same 'pass', and the reference raises (shape mismatch)"
)
_PASS_ARCHITECTURE = {"bi-encoder": _LABEL_ENCODER_PASS, "bi-encoder-fused": _LABEL_ENCODER_PASS}
_LAST_TOKEN = (
    "the text's feature is the decoder's last token, one vector, which the cross-attn scorer cannot read: "
    "the reference raises"
)
_PASS_CALIBRATOR = "the reference's calibrator takes one vector per text and raises on token states"


def unsupported_features(config: Mapping[str, Any]) -> list[str]:
    """What of (architecture, scorer, pooling) a checkpoint config sets that this library does not run,
    each with the supported values or the reason; empty when the combination is supported."""
    architecture = config.get("architecture_type", "uni-encoder")
    scorer = config.get("scorer_type", "simple")
    pooling = config.get("pooling_strategy", "first")
    problems = [
        f"{field} {_short(value)} (supported: {', '.join(supported)}{_not_yet(value)})"
        for field, value, supported in (
            ("architecture_type", architecture, SUPPORTED_ARCHITECTURES),
            ("scorer_type", scorer, SUPPORTED_SCORERS),
            ("pooling_strategy", pooling, SUPPORTED_POOLINGS),
        )
        if value not in supported
    ]
    if problems:
        return problems
    if architecture in LAST_TOKEN_ARCHITECTURES:
        if scorer in TOKEN_STATE_SCORERS:
            return [f"scorer_type {scorer!r} with architecture_type {architecture!r} ({_LAST_TOKEN})"]
        return []
    if (scorer in TOKEN_STATE_SCORERS) != (pooling == "pass"):
        return [f"scorer_type {scorer!r} with pooling_strategy {pooling!r} ({_PASS_MISMATCH})"]
    if pooling == "pass" and architecture not in PASS_POOLING_ARCHITECTURES:
        why = _PASS_ARCHITECTURE.get(architecture, "the reference does not run it")
        return [f"pooling_strategy 'pass' with architecture_type {architecture!r} ({why})"]
    if pooling == "pass" and config.get("use_calibrator"):
        return [f"use_calibrator=True with pooling_strategy 'pass' ({_PASS_CALIBRATOR})"]
    return []


def _not_yet(value: Any) -> str:
    return f"; {value} is {NOT_YET[value]}" if isinstance(value, str) and value in NOT_YET else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
