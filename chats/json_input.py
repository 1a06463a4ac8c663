"""JSON that comes from outside (request bodies, websocket frames, Kafka records), parsed one way.

Python's json raises RecursionError, not ValueError, for arrays or objects nested deeper than the
interpreter's recursion limit allows (10 KB of `[` is plenty): a caller that catches ValueError as "not
JSON" lets it through as a crash, a 500 or a websocket closed with 1011. Here it is a ValueError like any
other malformed input. NaN and Infinity are refused as well, as DRF does by default: they are not JSON.
"""

from __future__ import annotations

import json
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(text: str | bytes, *, allow_nan: bool = False) -> Any:
    """The value `text` holds; ValueError if it is not JSON (undecodable bytes and deep nesting included)."""
    try:
        return json.loads(text, parse_constant=None if allow_nan else _refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
