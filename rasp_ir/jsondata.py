"""Standard JSON for every file and output rasp-ir writes.

Python's `json` writes NaN and infinity as `NaN` and `Infinity`, which other JSON readers
(browsers, `jq`, Rust's serde) reject. Two ways out, chosen by what reads the data back:

- `json_safe` for reports and `--json` output, read by people and scripts: NaN becomes null,
  ±infinity the strings "inf" and "-inf".
- `dumps` / `decoded` for files rasp-ir itself reads back and must get exactly (a compiled
  model's output values, a side-file's labels): a non-finite float becomes `{"float": "inf"}`
  (or "-inf", "nan"), which `decoded` turns back into the float. The values these files hold
  are atoms (strings, numbers, booleans, null), never mappings, so the tag cannot be confused
  with a value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

_TAG = "float"
_NAMES = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def json_safe(value):
    """`value` as standard JSON data: NaN becomes null, +-infinity the strings "inf" and
    "-inf" (JSON has neither), numpy scalars and arrays plain numbers and lists, tuples and
    sets lists, paths strings, mapping keys strings."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [json_safe(v) for v in sorted(value, key=str)]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):                 # numpy arrays and scalars, torch tensors
        return json_safe(value.tolist())
    if hasattr(value, "to_json"):
        return json_safe(value.to_json())
    return str(value)


def tagged(value):
    """`value` with each non-finite float as {"float": "inf" | "-inf" | "nan"}; containers
    rebuilt (tuples as lists), everything else as it is."""
    if isinstance(value, float) and not math.isfinite(value):
        return {_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, dict):
        return {k: tagged(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tagged(v) for v in value]
    return value


def decoded(value):
    """The inverse of `tagged` on data read back with json.loads."""
    if isinstance(value, dict):
        if len(value) == 1 and value.get(_TAG) in _NAMES:
            return _NAMES[value[_TAG]]
        return {k: decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def dumps(value, **options) -> str:
    """`value` as standard JSON text that `decoded(json.loads(text))` reads back exactly."""
    return json.dumps(tagged(value), allow_nan=False, **options)
