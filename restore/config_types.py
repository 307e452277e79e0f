"""Check a config group's values against the type annotations of what it instantiates.

Hydra hands ``trainer.max_steps=abc`` to ``Trainer(max_steps="abc")`` as it is, and the run then
fails far away (``'<' not supported between 'str' and 'int'``). Checking each scalar value against
the annotation of the parameter it fills names the key, the value and the type it needs before
anything is built. Only scalars (numbers, strings, booleans, null) are checked: lists in YAML are
never the tuples some annotations name, and the constructors check those themselves. An
annotation this module cannot judge (a class, a callable) accepts every value.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from restore.errors import ConfigError

_SCALARS = (str, int, float, bool, type(None))
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def check_config_types(node: DictConfig | Mapping, key: str, target: Callable | None = None) -> None:
    """Raise a ConfigError naming ``key.field`` for the first scalar value its parameter cannot take.

    ``target``: what the node's fields are passed to; by default the node's ``_target_``.
    """
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    if target is None:
        if "_target_" not in values:
            return
        target = get_object(values["_target_"])
    parameters, hints = _annotations(target)
    for name, value in values.items():
        if name.startswith("_") or name not in hints or not isinstance(value, _SCALARS):
            continue
        if value is None and parameters[name].default is None:
            continue
        if _fits(value, hints[name]) is False:
            raise ConfigError(f"{key}.{name}={_show(value)}: {_describe(hints[name])} is needed")


def _annotations(target: Callable) -> tuple[Mapping[str, inspect.Parameter], dict[str, Any]]:
    # A class built from a config dataclass (MAXIM from MaximConfig) takes that class's fields.
    target = getattr(target, "config_class", target)
    function = target.__init__ if isinstance(target, type) else target
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation naming something not importable here: nothing to check
        return {}, {}
    return inspect.signature(function).parameters, hints


def _fits(value: Any, hint: Any) -> bool | None:
    """True or False when the annotation decides; None when it names something this cannot judge."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint) and type(value) in {type(arg) for arg in typing.get_args(hint)}
    if origin in (typing.Union, types.UnionType):
        verdicts = [_fits(value, arm) for arm in typing.get_args(hint)]
        return None if None in verdicts and True not in verdicts else any(verdicts)
    if origin is not None:  # list[int], dict[str, int], tuple[int, int]: a scalar is none of them
        return False if origin in (list, tuple, dict, set) else None
    if hint in (list, tuple, dict, set):
        return False
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool, type(None)):
        return type(value) is hint
    return None


def _describe(hint: Any) -> str:
    arms = _flatten(hint)
    choices = [_show(arm.value) for arm in arms if isinstance(arm, _Choice)]
    kinds = [_describe_one(arm) for arm in arms if not isinstance(arm, _Choice)]
    return " or ".join(dict.fromkeys(([f"one of {', '.join(dict.fromkeys(choices))}"] if choices else []) + kinds))


class _Choice(typing.NamedTuple):
    value: Any


def _flatten(hint: Any) -> list[Any]:
    """A union's arms, nested unions and literals spread out (a literal's values as _Choice)."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return [_Choice(arg) for arg in typing.get_args(hint)]
    if origin in (typing.Union, types.UnionType):
        return [flat for arm in typing.get_args(hint) for flat in _flatten(arm)]
    return [hint]


def _describe_one(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)
