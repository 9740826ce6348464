"""Checkpoint contents that load without running code.

``torch.load(..., weights_only=True)`` builds only tensors and plain containers (dict,
OrderedDict, list, tuple, str, int, float, bool, None); it refuses every other class or
function a pickle names, so a crafted file cannot call ``os.system`` on load. A training
state also holds numpy arrays (RNG states, per-slot bookkeeping, scheduler counts), so
:func:`encode` stores each one as a tagged dict of its dtype, shape and bytes (a uint8
tensor) and :func:`decode` turns them back into identical arrays: same dtype, same values,
so a resumed run continues bit for bit.

Checkpoints of earlier mtrl versions pickled the arrays themselves; :func:`legacy_numpy_globals`
lists the few numpy constructors they need (arrays and scalars of bool/int/float dtypes, no
object arrays), allowed for those files only.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

TAG = "__mtrl_ndarray__"
# numpy dtypes a checkpoint may hold: bool, signed/unsigned integers, floats ("<f8", "|b1", ...)
_DTYPE = re.compile(r"[<>|=][biuf]\d{1,2}")
_SAFE_KINDS = "biuf"
_LEAVES = (type(None), bool, int, float, str, torch.Tensor)


class UnsupportedValue(TypeError):
    """A state holds something a safe checkpoint cannot store (a class instance, an object array)."""


def encode(obj: Any, where: str = "state") -> Any:
    """``obj`` with every numpy array and scalar replaced by a tagged dict; containers that
    hold none are returned as they are (an OrderedDict keeps torch's ``_metadata``).
    :class:`UnsupportedValue` for anything ``weights_only`` loading would refuse."""
    if isinstance(obj, (np.ndarray, np.generic)):
        return _pack(obj, where)
    if type(obj) in (dict, OrderedDict):
        items = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise UnsupportedValue(f"{where} has a key of type {type(key).__name__}")
            items[key] = encode(value, f"{where}.{key}")
        if all(items[k] is obj[k] for k in obj):
            return obj
        return type(obj)(items)
    if type(obj) in (list, tuple):
        items = [encode(value, f"{where}[{i}]") for i, value in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(items)
    if type(obj) in _LEAVES or type(obj) is torch.nn.Parameter:  # not subclasses: loading would refuse them
        return obj
    raise UnsupportedValue(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}")


def _pack(value: np.ndarray | np.generic, where: str) -> dict[str, Any]:
    array = np.asarray(value)
    if array.dtype.kind not in _SAFE_KINDS:
        raise UnsupportedValue(f"{where} is a numpy array of dtype {array.dtype}")
    raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8).copy()
    return {
        TAG: array.dtype.str,
        "shape": list(array.shape),
        "scalar": isinstance(value, np.generic),
        "data": torch.from_numpy(raw),
    }


def decode(obj: Any) -> Any:
    """Undo :func:`encode` in place (lists, dicts) on a freshly loaded state. Numpy values
    already there (legacy files) are checked to be of a plain dtype. ``ValueError`` for a
    tagged dict that does not describe an array."""
    if isinstance(obj, dict):
        if TAG in obj:
            return _unpack(obj)
        for key, value in obj.items():
            obj[key] = decode(value)
        return obj
    if isinstance(obj, list):
        for i, value in enumerate(obj):
            obj[i] = decode(value)
        return obj
    if isinstance(obj, tuple):
        return tuple(decode(value) for value in obj)
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind not in _SAFE_KINDS:
        raise ValueError(f"it holds a numpy array of dtype {obj.dtype}")
    return obj


def _unpack(tagged: dict[str, Any]) -> np.ndarray | np.generic:
    dtype, shape, data, scalar = tagged.get(TAG), tagged.get("shape"), tagged.get("data"), tagged.get("scalar")
    if not (
        isinstance(dtype, str)
        and _DTYPE.fullmatch(dtype)
        and isinstance(shape, list)
        and all(type(n) is int and 0 <= n < 2**40 for n in shape)
        and isinstance(scalar, bool)
        and isinstance(data, torch.Tensor)
        and data.dtype == torch.uint8
        and data.dim() == 1
    ):
        raise ValueError("it holds a malformed array entry")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"it holds an array of unknown dtype {dtype!r}") from None
    if data.numel() != math.prod(shape) * np_dtype.itemsize or (scalar and shape):
        raise ValueError("it holds an array entry whose size does not match its shape")
    array = data.cpu().numpy().view(np_dtype).reshape(shape).copy()
    return array[()] if scalar else array


def legacy_numpy_globals() -> list[Any]:
    """What pickled numpy arrays and scalars of plain dtypes need under ``weights_only``
    (earlier mtrl checkpoints): the array/scalar constructors under numpy 1's and numpy 2's
    module names, and the dtype classes of bool, integers and floats (not ``object``)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    allowed: list[Any] = [np.ndarray, np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    allowed += list({type(np.dtype(code)) for code in "?bBhHiIlLqQefdg"} - {np.dtype})
    return allowed


def _kind(value: Any) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"a {tuple(value.shape)} {value.dtype} {'array' if isinstance(value, np.ndarray) else 'tensor'}"
    return f"a {type(value).__name__}"


def check_like(template: Any, value: Any, where: str) -> None:
    """``ValueError`` unless a restored ``value`` has the kind of the live ``template``: an
    array of the same dtype and shape, an int for an int, a dict with the same keys (checked
    in turn). What a checkpoint sets by assignment passes here first, so that a file of the
    right format but the wrong contents is refused on load, not in the middle of training."""
    if isinstance(template, (np.ndarray, torch.Tensor)):
        ok = (
            type(value) is type(template)
            and value.dtype == template.dtype
            and tuple(value.shape) == tuple(template.shape)
        )
    elif isinstance(template, (bool, np.bool_)):
        ok = isinstance(value, (bool, np.bool_))
    elif isinstance(template, (int, np.integer)):
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    elif isinstance(template, (float, np.floating)):
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    elif isinstance(template, dict):
        ok = isinstance(value, dict) and set(value) == set(template)
        if ok:
            for key in template:
                check_like(template[key], value[key], f"{where}.{key}")
    else:
        ok = type(value) is type(template)
    if not ok:
        raise ValueError(f"{where} is {_kind(value)}, expected {_kind(template)}")
