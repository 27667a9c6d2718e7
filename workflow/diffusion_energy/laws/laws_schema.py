"""What a laws file must hold for ``predict`` to answer: its schema, checked when the file is read.

Why: a laws JSON (``results/laws/laws.json``, ``modalities.json``) missing or mangling a key, by
hand, by another tool or another version, otherwise ends in a traceback deep inside ``predict``, or
in a message that blames the data ("too few architectures measured") for what is a damaged file.
``problems`` names each key that breaks the schema (JSON schema for the layout; then what a schema
cannot say: a selected candidate that is not among the candidates, an architecture with a law of
its own but no verdict of ``own_or_pooled``, a law predict can answer with or a datasheet that
does not load), and ``analysis_io.read_laws`` refuses such a file with the key named and "refit".

Only what ``predict`` reads is required; other keys may come and go with the fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from ..sources.schema import THIS_WORKFLOW

_NUMBER = {"type": "number"}
_LAW = {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string", "minLength": 1}}}
_CANDIDATES = {"type": "object", "additionalProperties": {
    "type": "object", "required": ["law"],
    "properties": {"law": _LAW, "description": {"type": "string"}, "lomo": {"type": "object"},
                   "logo_interval": {"type": "object"}}}}
_NAME_OR_NULL = {"type": ["string", "null"]}
_POOLED_ENTRY = {
    "type": "object",
    "required": ["candidates", "selected", "selected_by_gpu"],
    "properties": {
        "candidates": _CANDIDATES,
        "unseen_gpu_candidates": _CANDIDATES,
        "selected": _NAME_OR_NULL,
        "selected_by_gpu": {"type": "object", "additionalProperties": _NAME_OR_NULL},
        "selected_unmeasured_gpu": _NAME_OR_NULL,
        "selection": {"type": "string"},
        "not_fitted": {"type": "object"},
    },
}
_VERDICT = {
    "type": "object",
    "required": ["answer", "n_points", "own_rms_log", "pooled_rms_log"],
    "properties": {"answer": {"enum": ["architecture", "pooled"]},
                   "n_points": {"type": "integer", "minimum": 1}, "own_rms_log": _NUMBER,
                   "pooled_rms_log": _NUMBER, "pooled": {"type": "string"}},
}
_DATASHEET = {
    "type": "object",
    "required": ["half_tflop_s", "fp32_tflop_s", "bandwidth_gb_s", "power_limit_w"],
    "properties": {k: {"type": "number", "exclusiveMinimum": 0}
                   for k in ("half_tflop_s", "fp32_tflop_s", "tf32_tflop_s", "bandwidth_gb_s",
                             "power_limit_w")},
}

#: The laws file's layout as ``predict`` reads it (``status: ok``; any other status needs only a reason).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "status"],
    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {
        "required": ["settings", "gpus", "models", "n_points", "pooled", "datasheets"],
        "properties": {
            "settings": {"type": "object", "required": ["prediction_level"],
                         "properties": {"prediction_level": {"type": "number", "exclusiveMinimum": 0,
                                                             "exclusiveMaximum": 1}}},
            "gpus": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "models": {"type": "array", "items": {"type": "string"}},
            "n_points": {"type": "integer", "minimum": 1},
            "points_by_source": {"type": "object", "additionalProperties": {"type": "integer"}},
            "pooled": {"type": "object", "required": ["image"], "additionalProperties": _POOLED_ENTRY},
            "per_architecture": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": {"type": "object", "additionalProperties": _LAW}}},
            "own_or_pooled": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": _VERDICT}},
            "datasheets": {"type": "object", "additionalProperties": _DATASHEET},
            "measured_by": {"type": "object", "additionalProperties": {"type": "string"}},
            "ranges": {"type": "object"},
        },
    },
}


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "the top level"


def _schema_problems(payload: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(dict(payload)), key=lambda e: list(e.absolute_path))
    return [f"{_where(e)}: {e.message}" for e in errors if e.validator not in ("if", "then")]


def _law_problems(where: str, law: Mapping[str, Any]) -> list[str]:
    from .blend import load_law

    try:
        load_law(dict(law))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        return [f"{where}: the law cannot be read ({type(exc).__name__}: {exc})"]
    return []


def _consistency(payload: Mapping[str, Any]) -> list[str]:
    """What a JSON schema cannot say: names that point at something absent, laws that do not load."""
    from ..sources.gpu_datasheets import Datasheet, DatasheetError

    out: list[str] = []
    for target, entry in payload["pooled"].items():
        names, unseen = set(entry["candidates"]), set(entry.get("unseen_gpu_candidates", {}))
        picks = [("selected", entry["selected"], names),
                 ("selected_unmeasured_gpu", entry.get("selected_unmeasured_gpu"), unseen),
                 *((f"selected_by_gpu.{g}", c, names) for g, c in entry["selected_by_gpu"].items())]
        out += [f"pooled.{target}.{key}: {name!r} is not among its candidates ({', '.join(sorted(pool))})"
                for key, name, pool in picks if name is not None and name not in pool]
        # The laws predict can answer with load (a candidate never chosen may hold a NaN, written as null).
        for group, chosen in (("candidates", {entry["selected"], *entry["selected_by_gpu"].values()}),
                              ("unseen_gpu_candidates", {entry.get("selected_unmeasured_gpu")})):
            for name in sorted(c for c in chosen if c in entry.get(group, {})):
                out += _law_problems(f"pooled.{target}.{group}.{name}.law", entry[group][name]["law"])
    verdicts = payload.get("own_or_pooled", {})
    for target, sources in payload.get("per_architecture", {}).items():
        for source, laws in sources.items():
            for model, law in laws.items():
                out += _law_problems(f"per_architecture.{target}.{source}.{model}", law)
        pooled = payload["pooled"].get(target)
        if pooled is None and sources:
            out.append(f"pooled: no entry {target!r}, though per_architecture has laws of that target")
            continue
        for model in sources.get(THIS_WORKFLOW, {}):
            if pooled and pooled["candidates"] and model not in verdicts.get(target, {}):
                out.append(f"own_or_pooled.{target}.{model}: missing (which of {model}'s own law and the "
                           "pooled model answers it)")
    for kind, sheet in payload["datasheets"].items():
        try:
            Datasheet.from_config(sheet, f"datasheets.{kind}")
        except DatasheetError as exc:
            out.append(str(exc))
    return out


def problems(payload: Mapping[str, Any]) -> list[str]:
    """Every way ``payload`` breaks the laws file's layout ([] for a file ``predict`` can read)."""
    found = _schema_problems(payload)
    if found or payload.get("status") != "ok":
        return found
    return _consistency(payload)
