"""Model files: one ``.npz`` of named arrays plus a JSON header, never a pickle.

The arrays use the model's dotted keys (``layers.0.W``); the header (stored as the UTF-8 bytes
of a JSON document under ``__header__``) records the format version, the numlp version, the
architecture, input shape, preprocessing, class names and a training summary. Loading checks
all of it and refuses anything it cannot vouch for; saving is atomic, so an existing file is
never replaced by a half-written one.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from numlp import preprocess
from numlp._version import __version__
from numlp.atomic import atomic_write_bytes
from numlp.committee import Committee
from numlp.data.catalog import good_inputs
from numlp.data.idx import MAX_DEFLATE_RATIO
from numlp.layers import LAYERS
from numlp.model import Sequential
from numlp.npyfile import NpyError, read_npy_header
from numlp.registry import MODEL_FILES

FORMAT = "numlp-model"
COMMITTEE_FORMAT = "numlp-committee"
CHECKPOINT_FORMAT = "numlp-checkpoint"
FORMAT_VERSION = 1
HEADER_KEY = "__header__"


class ModelFileError(ValueError):
    """A model file is missing, damaged, unsafe or from an unknown format version."""


def save_model(path, model: Sequential, **metadata) -> Path:
    """Write ``model`` to ``path`` (``.npz``) with ``metadata`` in the header.

    Useful metadata: ``class_names`` (list of str), ``preprocessing`` (e.g.
    ``{"scale": 1/255}``), ``dataset``, ``training`` (a summary dict). Returns the path.
    """
    path = Path(path)
    write_archive(path, archive_header(FORMAT, model, metadata), model.state_dict())
    return path


def archive_header(kind: str, model: Sequential, metadata: dict) -> dict:

    return {
        "format": kind,
        "format_version": FORMAT_VERSION,
        "numlp_version": __version__,
        "dtype": str(model.dtype),
        "model": model.config(),
        **metadata,
    }


def write_archive(path: Path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    arrays = dict(arrays)
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def save_committee(path, committee: Committee, members_training=(), **metadata) -> Path:
    """Write ``committee`` to ``path`` (``.npz``): every member's arrays under
    ``members.I.``, each member's architecture (and training summary, from
    ``members_training``) in the header, and the ``metadata`` they share (class names,
    preprocessing, dataset, the committee's own ``training`` summary). Returns the path."""
    path = Path(path)
    training = list(members_training) or [{} for _ in committee.members]
    members, arrays = [], {}
    for i, (member, summary) in enumerate(zip(committee.members, training, strict=True)):
        members.append({"dtype": str(member.dtype), "model": member.config(), "training": summary})
        arrays.update({f"members.{i}.{k}": v for k, v in member.state_dict().items()})
    header = {
        "format": COMMITTEE_FORMAT,
        "format_version": FORMAT_VERSION,
        "numlp_version": __version__,
        "members": members,
        **metadata,
    }
    write_archive(path, header, arrays)
    return path


def save(path, model, **metadata) -> Path:
    """Write ``model`` (a model or a committee) to ``path``: :func:`save_model` or
    :func:`save_committee`, as ``model.save(path)`` does."""
    if len(model.members) > 1:
        return save_committee(path, model, **metadata)
    return save_model(path, model, **metadata)


MODEL_FILES.register("npz", save)


def load(path):
    """The model (or committee) in the model file or run folder ``path``, its file's header
    as ``model.header``: PyTorch's and Keras' way (``numlp.load("runs/latest")``)."""
    model, header = load_model(path)
    model.header = header
    return model


def read_header(path) -> dict:
    """The JSON header of a model or committee file, validated (format and version)."""
    return open_archive(path)[0]


def load_model(path) -> tuple[Sequential | Committee, dict]:
    """Load a model file, or a committee file (a :class:`~numlp.committee.Committee`): returns
    ``(model, header)``. Raises :class:`ModelFileError` if the file is not a numlp model,
    holds pickled objects, comes from a newer format, or its arrays do not match its
    architecture (shape, dtype, NaN or Inf), or a committee's members do not agree."""
    header, arrays = open_archive(path)
    if header["format"] == COMMITTEE_FORMAT:
        return build_committee(path, header, arrays), header
    model = build_from_header(path, header, arrays)
    return model, header


# What a model reference (a teacher, a committee member, a resumed checkpoint) must share with
# the run or committee it joins: the data it was trained on, as its header records them.
SHARED_FACTS = ("dataset", "class_names", "preprocessing")


def check_reference(who, header: dict, model, facts: dict, input_shape, classes: int) -> None:
    """Refuse (ValueError naming ``who``) a model that was trained on other data than
    ``facts`` say (dataset, class names, pixel preprocessing), or takes another input shape
    or gives another number of classes: the one check every model reference goes through."""
    for key in SHARED_FACTS:
        theirs, ours = header.get(key), facts.get(key)
        if key == "class_names" and theirs is not None:
            theirs = list(theirs)
        if ours is not None and theirs != (list(ours) if key == "class_names" else ours):
            if key == "preprocessing":
                raise ValueError(
                    f"{who}: it was trained on pixels scaled as {theirs}, this run feeds "
                    f"{ours}: set input_scale and input_shift to match"
                )
            raise ValueError(
                f"{who}: its {key.replace('_', ' ')} {theirs!r} differs from this run's "
                f"{ours!r}; it must have been trained on the same data"
            )
    if tuple(model.input_shape) != tuple(input_shape) or model.classes != classes:
        raise ValueError(
            f"{who} takes inputs of shape {tuple(model.input_shape)} and gives {model.classes} "
            f"classes; this run's take {tuple(input_shape)} and give {classes}"
        )


MAX_MEMBERS = 1000


def build_committee(path, header: dict, arrays: dict[str, np.ndarray]) -> Committee:
    """The committee a header describes: each member checked as a model file of its own would
    be (:func:`build_from_header`), then the members against each other."""
    members = header.get("members")
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise ModelFileError(f"{path}: its header has no list of committee members")
    if len(members) > MAX_MEMBERS:
        raise ModelFileError(f"{path}: {len(members)} members is more than {MAX_MEMBERS}")
    shared = {k: header[k] for k in ("preprocessing", "class_names") if k in header}
    built, claimed = [], set()
    for i, spec in enumerate(members):
        prefix = f"members.{i}."
        own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        claimed |= {prefix + k for k in own}
        if not isinstance(spec.get("training", {}), dict):
            raise ModelFileError(f"{path}: member {i}'s training summary is not a table")
        built.append(build_from_header(f"{path} (member {i})", {**spec, **shared}, own))
    if set(arrays) - claimed:
        extra = sorted(set(arrays) - claimed)[:3]
        raise ModelFileError(f"{path}: arrays that belong to no member: {extra}")
    try:
        return Committee(built)
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from None


def class_names(header: dict, classes: int) -> list[str]:
    """The class names a model file gives (checked on load), else ``"0"``, ``"1"``..."""
    return list(header.get("class_names") or (str(i) for i in range(classes)))


DTYPES = ("float32", "float64")
MAX_INPUT = 1 << 24  # values per sample: a 4096x4096 picture
MAX_NAME_LENGTH = 200


def build_from_header(path, header: dict, arrays: dict[str, np.ndarray]) -> Sequential:
    """The model the header describes, with ``arrays`` loaded into it after every check.

    The header is untrusted: its dtype, the shapes its layers declare (against the arrays
    actually stored, before the model is allocated), its class names and preprocessing are
    all checked, so a lying file costs no more memory than its own arrays."""
    dtype = header.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ModelFileError(f"{path}: dtype {dtype!r} in its header is not one of {DTYPES}")
    try:
        _check_declared_shapes(header["model"], arrays)
        model = Sequential.from_config(header["model"], dtype=np.dtype(dtype))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
        raise ModelFileError(f"{path}: the architecture in its header is invalid: {err}") from None
    try:
        preprocess.check(header.get("preprocessing"))
        _check_class_names(header.get("class_names"), model.classes)
    except ValueError as err:
        raise ModelFileError(f"{path}: {err}") from None
    for key, arr in arrays.items():  # untrusted weights: load_state_dict checks the rest
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{path}: {key} contains NaN or Inf; the model is unusable")
    try:
        model.load_state_dict(arrays)  # keys, shapes and dtypes, all before any change
    except ValueError as err:
        raise ModelFileError(f"{path}: arrays do not match the architecture: {err}") from None
    return model


def _check_declared_shapes(spec: dict, arrays: dict[str, np.ndarray]) -> None:
    """Each layer's declared array shapes (:meth:`Layer.state_shapes`) against the stored ones."""
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise ValueError("it has no list of layers")
    shape = spec.get("input_shape")
    if shape is not None and not (
        isinstance(shape, list)
        and 0 < len(shape) <= 4
        and all(type(d) is int and 0 < d <= MAX_INPUT for d in shape)
        and math.prod(shape) <= MAX_INPUT
    ):
        raise ValueError(f"input_shape {shape!r} is not a list of positive sizes")
    for i, layer in enumerate(spec["layers"]):
        if not isinstance(layer, dict) or layer.get("type") not in LAYERS:
            kind = layer.get("type") if isinstance(layer, dict) else layer
            raise ValueError(f"layer {i}: unknown layer type {kind!r}")
        settings = {k: v for k, v in layer.items() if k != "type"}
        shapes = LAYERS[layer["type"]].state_shapes(settings)
        for name, shape in (shapes or {}).items():
            stored = arrays.get(f"layers.{i}.{name}")
            if stored is None or stored.shape != shape:
                held = "nothing" if stored is None else f"shape {stored.shape}"
                raise ValueError(
                    f"layer {i} ({layer['type']}) declares {name} of shape {shape} but the file "
                    f"holds {held}"
                )


def _check_class_names(names, classes: int) -> None:
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("class_names must be a list of strings")
    if len(names) != classes:
        raise ValueError(f"it names {len(names)} classes but the model has {classes} outputs")
    if any(len(n) > MAX_NAME_LENGTH for n in names):
        raise ValueError(f"a class name is longer than {MAX_NAME_LENGTH} characters")
    if not all(n.strip() for n in names):
        raise ValueError("a class name is empty: every class needs a name of its own")
    if len(set(names)) != len(names):
        raise ValueError("two classes have the same name: every class needs a name of its own")


_CHECKPOINT_ADVICE = (
    "; the run cannot continue from it: start it again (numlp train --overwrite) or "
    "restore the file from a backup"
)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz, each .npy header checked against the member's real size before
    anything is allocated; object arrays (pickles) are refused."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise ModelFileError(f"{path}: unexpected member {info.filename!r} in the archive")
            limit = info.compress_size * (MAX_DEFLATE_RATIO if info.compress_type else 1)
            with archive.open(info) as member:
                try:
                    shape, fortran, dtype = read_npy_header(member)
                except NpyError as err:
                    raise ModelFileError(f"{path}: {err}") from None
                declared = math.prod(shape) * dtype.itemsize
                if declared != info.file_size - member.tell() or declared > limit + 1024:
                    raise ModelFileError(
                        f"{path}: {info.filename} declares shape {shape} ({declared:,} bytes), "
                        "which does not match its size in the archive"
                    )
                data = member.read(declared)
            if len(data) != declared:
                raise ModelFileError(f"{path}: {info.filename} is truncated")
            array = np.frombuffer(data, dtype=dtype)
            array = array.reshape(shape, order="F" if fortran else "C")
            arrays[info.filename[:-4]] = array.copy()  # writable, owning its memory
    return arrays


def open_archive(path, expected_format: str = FORMAT) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    what = "model" if expected_format == FORMAT else "checkpoint"
    advice = "" if what == "model" else _CHECKPOINT_ADVICE
    if path.is_dir():  # a run folder stands for the file it holds
        inside = path / f"{what}.npz"
        if not inside.is_file():
            raise ModelFileError(f"{path} is a folder without a {what}.npz: is it a finished run?")
        path = inside
    if not path.is_file():
        raise ModelFileError(f"{path}: no such {what} file")
    try:
        arrays = _read_npz(path)
    except ModelFileError as err:
        raise ModelFileError(f"{err}{advice}") from None
    except Exception as err:  # untrusted bytes: any parse failure means a damaged file
        raise ModelFileError(
            f"{path}: not a readable .npz {what} file, damaged or truncated ({err}){advice}"
        ) from None
    raw = arrays.pop(HEADER_KEY, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: has no numlp header; it was not written by numlp")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ModelFileError(f"{path}: its header is not valid JSON ({err})") from None
    kinds = (FORMAT, COMMITTEE_FORMAT) if expected_format == FORMAT else (expected_format,)
    if not isinstance(header, dict) or header.get("format") not in kinds:
        raise ModelFileError(f"{path}: not a numlp {what} file")
    if not isinstance(header.get("training", {}), dict):
        raise ModelFileError(f"{path}: the training summary in its header is not a table")
    if not isinstance(header["training"].get("config", {}) if "training" in header else {}, dict):
        raise ModelFileError(f"{path}: the training settings in its header are not a table")
    if not isinstance(header.get("dataset", ""), str):
        raise ModelFileError(f"{path}: the dataset in its header is not a name")
    if "inputs" in header and not good_inputs(header["inputs"]):
        raise ModelFileError(f"{path}: what its header says of its inputs is not usable")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(
            f"{path}: model format version {version!r} is not supported by this numlp "
            f"(it reads version {FORMAT_VERSION}); upgrade numlp to load it"
        )
    return header, arrays
