"""The environment's part in the configuration: ``${VAR}`` expansion inside values and
``METAXY_*`` variables that override keys (nested with ``__``).

Used by :mod:`mxd_cli.config`; both steps run on the raw TOML data before validation.

Example::

    data = {"store": "dev"}
    apply_overrides(data, {"METAXY_STORE": "prod"}, {}, takes_text=lambda key: True)
    assert data == {"store": "prod"}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from mxd_cli.errors import ConfigError

ENV_PREFIX = "METAXY_"
#: Names the config file; read by discovery, never an override.
CONFIG_VARIABLE = "METAXY_CONFIG"

Key = tuple[str, ...]
#: Where each key came from: a file path, "environment variable X", or None.
Origins = dict[Key, "str | None"]

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def dotted(key: Key) -> str:
    return ".".join(key)


def forget(origins: Origins, prefix: Key) -> None:
    """Drop the recorded origins of ``prefix`` and everything below it."""
    for key in [k for k in origins if k[: len(prefix)] == prefix]:
        del origins[key]


def expand_env(value: Any, key: Key, env: Mapping[str, str], where: str) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` substituted in every string.

    As in Metaxy, a variable that is set (even to "") wins over the default. Unlike
    Metaxy, which substitutes "", a missing variable without a default is an error.
    """
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match[1], match[2]
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set (used in '{dotted(key)}')",
                hint=f"set {name} or write ${{{name}:-default}}",
                location=where,
            )

        return _REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, (*key, k), env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(item, key, env, where) for item in value]
    return value


def apply_overrides(
    data: dict[str, Any],
    env: Mapping[str, str],
    origins: Origins,
    *,
    takes_text: Callable[[Key], bool],
) -> None:
    """Set ``METAXY_A__B=value`` as ``data["a"]["b"]``, recording each key's origin.

    Key segments are lowercased. Values are parsed as JSON when they are valid JSON
    (numbers, booleans, arrays, tables), except under keys for which ``takes_text`` is
    true; JSON ``null`` removes the key. Unknown keys are left for validation to report.
    """
    overrides = []
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_VARIABLE:
            continue
        key = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        where = f"environment variable {name}"
        if not all(key):
            raise ConfigError(
                f"cannot read {name}: a key segment is empty",
                hint="nest keys with a double underscore, e.g. METAXY_STORES__DEV__TYPE",
                location=where,
            )
        if key == ("extend",):
            raise ConfigError(
                "'extend' cannot be set from the environment",
                hint='write extend = "..." in the config file',
                location=where,
            )
        overrides.append((len(key), name, key, where, raw))
    # Whole tables first, so METAXY_STORES='{...}' does not erase METAXY_STORES__DEV__TYPE.
    for _, _, key, where, raw in sorted(overrides):
        _set_key(data, key, raw if takes_text(key) else _parse_json(raw), where)
        forget(origins, key)
        origins[key] = where


def _parse_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _set_key(data: dict[str, Any], key: Key, value: Any, where: str) -> None:
    table = data
    for depth, part in enumerate(key[:-1]):
        child = table.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"cannot set '{dotted(key)}': '{dotted(key[: depth + 1])}' is not a table",
                location=where,
            )
        table = child
    last = key[-1]
    if value is None:
        table.pop(last, None)
    elif isinstance(value, dict) and isinstance(table.get(last), dict):
        table[last] = _deep_merge(table[last], value)
    else:
        table[last] = value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = value
    return merged
