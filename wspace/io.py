"""Safe reading and writing of weights.

* safetensors everywhere (with string metadata); writes are atomic (temp file +
  ``os.replace``), so a killed process never leaves a half-written file behind.
* ``.pt`` / ``.pth`` files are read only through ``torch.load(weights_only=True)``,
  which refuses arbitrary pickled objects; the result must be a flat mapping of
  tensors (a ``{"state_dict": {...}}`` wrapper is accepted).
* Every problem raises :class:`~wspace.errors.WeightSpaceError` naming the file,
  the tensor and the problem: truncated/corrupt files, non-tensor pickles, NaN/inf,
  missing/extra keys, shapes that do not match the spec.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import tempfile
import struct
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import WeightSpaceError
from .space import WeightSpace, check_keys, check_state_dict
from .spec import WeightSpaceSpec

PathLike = str | os.PathLike

_SPEC_META_KEY = "wspace.spec"


def process_umask() -> int:
    """The process umask (read without changing it where ``/proc`` allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (the lock keeps our threads from racing)
        old = os.umask(0o022)
        os.umask(old)
    return old


_UMASK_LOCK = threading.Lock()


def temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file next to ``path`` (same directory, so ``os.replace`` is atomic),
    open for writing, with the permissions an ordinary ``open`` would give it (``0666``
    less the umask: ``0644`` by default) instead of ``mkstemp``'s ``0600``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~process_umask())
    except (AttributeError, OSError):  # pragma: no cover - platforms without fchmod
        pass
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched. The
    file gets the permissions of an ordinary ``open`` (the process umask applies).
    """
    path = Path(path)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: PathLike, missing: str = "file not found") -> Any:
    """Parse the JSON file at ``path``; a missing, unreadable or invalid file raises
    :class:`WeightSpaceError` naming it (``missing`` is the message for a missing file)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise WeightSpaceError(missing, file=path) from e
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise WeightSpaceError(f"invalid JSON: {e or type(e).__name__}", file=path) from e


def check_finite(tensors: Mapping[str, torch.Tensor], file: PathLike | None = None) -> None:
    """Raise if any floating tensor holds NaN or inf."""
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(torch.isinf(t).sum())
            raise WeightSpaceError(f"contains non-finite values ({n_nan} NaN, {n_inf} inf)", file=file, tensor=k)


def save_safetensors(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (made contiguous, moved to CPU) to ``path`` atomically (permissions
    as :func:`atomic_write`)."""
    path = Path(path)
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        save_file(data, tmp, metadata=meta)
        os.chmod(tmp, 0o666 & ~process_umask())  # safetensors recreates the file: set the mode again
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# safetensors dtype tags -> numpy (little-endian); BF16 is read as uint16 and viewed.
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit


def _parse_header(path: Path) -> tuple[dict, int, int]:
    """The raw JSON header of a safetensors file (tensor entries in file order, with
    ``__metadata__`` checked to map strings to strings), its length in bytes and the file
    size. The one header parser."""
    if path.is_dir():
        raise WeightSpaceError("is a directory, not a safetensors file", file=path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WeightSpaceError("truncated safetensors file (no header)", file=path)
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise WeightSpaceError("truncated safetensors file (header longer than the file)", file=path)
            if n > MAX_HEADER_BYTES:
                raise WeightSpaceError(f"corrupt safetensors header (announces {n} bytes, more than the "
                                       f"format's {MAX_HEADER_BYTES})", file=path)
            header = json.loads(f.read(n), object_pairs_hook=OrderedDict)
    except FileNotFoundError as e:
        raise WeightSpaceError("file not found", file=path) from e
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise WeightSpaceError(f"corrupt safetensors header: {e}", file=path) from e
    except OSError as e:
        raise WeightSpaceError(f"cannot read: {e.strerror or e}", file=path) from e
    if not isinstance(header, dict):
        raise WeightSpaceError(f"corrupt safetensors header (a JSON {type(header).__name__}, not an object)",
                               file=path)
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise WeightSpaceError("corrupt safetensors header: __metadata__ must map strings to strings", file=path)
    return header, n, size


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def read_safetensors_metadata(path: PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, without reading its tensors."""
    header, _, _ = _parse_header(Path(path))
    return dict(header.get("__metadata__", {}) or {})


def read_safetensors_header(path: PathLike) -> tuple[dict[str, dict], dict[str, str], int]:
    """Parse and check a safetensors header without reading tensor data.

    Returns ``(tensors, metadata, data_start)`` where ``tensors`` maps name ->
    ``{"dtype", "shape", "data_offsets"}`` (file order) and ``data_start`` is the file
    offset of the data block. Raises :class:`WeightSpaceError` naming the file (and the
    tensor) if it is missing, truncated or malformed, or if an entry's offsets do not
    match its shape and dtype (:data:`SAFETENSORS_DTYPES`).
    """
    path = Path(path)
    header, n, size = _parse_header(path)
    meta = dict(header.pop("__metadata__", None) or {})
    data_start = 8 + n
    end = 0
    for name, info in header.items():
        if not isinstance(info, dict):
            raise WeightSpaceError("corrupt safetensors header entry (not an object)", file=path, tensor=name)
        offsets, shape, tag = info.get("data_offsets"), info.get("shape"), info.get("dtype")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(x) for x in offsets)
                and offsets[0] <= offsets[1]):
            raise WeightSpaceError(f"corrupt safetensors header entry: data_offsets {offsets!r} is not "
                                   "[begin, end] with 0 <= begin <= end", file=path, tensor=name)
        if not (isinstance(shape, list) and all(_is_count(x) for x in shape)):
            raise WeightSpaceError(f"corrupt safetensors header entry: shape {shape!r} is not a list of "
                                   "non-negative integers", file=path, tensor=name)
        if not isinstance(tag, str) or tag not in SAFETENSORS_DTYPES:
            raise WeightSpaceError(f"unsupported or corrupt dtype {tag!r} (known: {sorted(SAFETENSORS_DTYPES)})",
                                   file=path, tensor=name)
        b, e = offsets
        if e - b != math.prod(shape) * SAFETENSORS_DTYPES[tag].itemsize:
            raise WeightSpaceError("corrupt safetensors header: offsets do not match the shape", file=path, tensor=name)
        end = max(end, e)
    if data_start + end > size:
        raise WeightSpaceError(
            f"truncated file: the header announces {data_start + end} bytes, the file has {size}", file=path)
    return header, meta, data_start


def load_safetensors(path: PathLike, *, check: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read all tensors and the metadata of a safetensors file (validated)."""
    path = Path(path)
    if not path.exists():
        raise WeightSpaceError("file not found", file=path)
    _, meta, _ = read_safetensors_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightSpaceError(f"corrupt or truncated safetensors file: {e}", file=path) from e
    if check:
        check_finite(tensors, path)
    return tensors, meta


def read_torch_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a torch pickle, whatever the file's extension (``weights_only=True``:
    plain tensors only; a ``{"state_dict": {...}}`` wrapper is unwrapped). Not finite-checked:
    :func:`load_state_dict` adds that (and dispatches on the extension)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightSpaceError(
            f"refused to load: the pickle holds objects other than plain tensors ({str(e).splitlines()[0]})", file=path
        ) from e
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile, struct.error, UnicodeDecodeError, OverflowError, MemoryError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise WeightSpaceError(f"corrupt or truncated checkpoint: {first}", file=path) from e
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightSpaceError(f"expected a state_dict (mapping of tensors), found {type(obj).__name__}", file=path)
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise WeightSpaceError(f"is a {type(v).__name__}, not a tensor", file=path, tensor=str(k))
        out[str(k)] = v
    return out


def load_state_dict(path: PathLike, *, spec: WeightSpaceSpec | None = None) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``.safetensors`` or ``.pt``/``.pth`` (never unpickling objects).

    With ``spec``, keys and shapes are validated against it. NaN/inf always raise.
    """
    path = Path(path)
    if not path.exists():
        raise WeightSpaceError("file not found", file=path)
    if path.suffix == ".safetensors":
        sd, _ = load_safetensors(path)
    elif path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        sd = read_torch_state_dict(path)
        check_finite(sd, path)
    else:
        raise WeightSpaceError(f"unknown checkpoint extension '{path.suffix}' (use .safetensors, .pt or .pth)", file=path)
    if spec is not None:
        validate_state_dict(sd, spec, path)
    return sd


def validate_state_dict(sd: Mapping[str, torch.Tensor], spec: WeightSpaceSpec, file: PathLike | None = None) -> None:
    """Raise unless ``sd`` has exactly the spec's keys, with the spec's shapes, all finite."""
    check_state_dict(sd, spec, None if file is None else str(file))
    check_finite({k: sd[k] for k in spec.keys}, file)


def parse_spec(data: str | Mapping[str, Any], file: PathLike | None = None, where: str = "the spec"
               ) -> WeightSpaceSpec:
    """A spec from untrusted JSON text or a dict (a file's metadata, a zoo description):
    whatever is wrong with it raises :class:`WeightSpaceError` naming ``file`` and ``where``."""
    try:
        if isinstance(data, str):
            return WeightSpaceSpec.from_json(data)
        if not isinstance(data, Mapping):
            raise WeightSpaceError(f"a spec must be a JSON object, got {type(data).__name__}")
        return WeightSpaceSpec.from_dict(dict(data))
    except WeightSpaceError as e:
        raise WeightSpaceError(f"invalid spec in {where}: {e.problem}", file=file) from e
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        raise WeightSpaceError(f"invalid spec in {where}: {type(e).__name__}: {e}", file=file) from e


def save_weight_space(ws: WeightSpace, path: PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write a batch of networks (stacked tensors + spec in the metadata) to one safetensors file."""
    meta = dict(metadata or {})
    meta[_SPEC_META_KEY] = ws.spec.to_json()
    save_safetensors(path, ws.state_dict(), meta)


def load_weight_space(path: PathLike, spec: WeightSpaceSpec | None = None) -> WeightSpace:
    """Read what :func:`save_weight_space` wrote (the spec comes from the file unless given)."""
    tensors, meta = load_safetensors(path)
    if spec is None:
        if _SPEC_META_KEY not in meta:
            raise WeightSpaceError("no wspace spec in the metadata; pass spec=", file=path)
        spec = parse_spec(meta[_SPEC_META_KEY], path, f"the metadata's '{_SPEC_META_KEY}'")
    check_keys(tensors.keys(), spec, str(path))  # also a spec= that does not fit the file
    B = None
    for p in spec.params:
        t = tensors[p.key]
        if tuple(t.shape[1:]) != p.shape or (B is not None and t.shape[0] != B):
            raise WeightSpaceError(f"has shape {tuple(t.shape)}, expected [B, {', '.join(map(str, p.shape))}]", file=path, tensor=p.key)
        B = t.shape[0]
    return WeightSpace(spec, [tensors[k] for k in spec.keys])
