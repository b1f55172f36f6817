"""Committees from trained models: joined, scored on the test set once, saved.

``numlp ensemble RUN...`` joins trained models into one committee file
(:func:`build_ensemble`), under the same exclusive claim as a training run when it writes
into a run folder. ``numlp train --members N`` trains the members through the run layer
(:mod:`numlp.run`), which joins them with :func:`gather` and :func:`score_and_save` here.
Every member is checked against the first like any model reference
(:func:`numlp.io.check_reference`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from numlp.committee import Committee
from numlp.data.datasets import DataSource
from numlp.io import SHARED_FACTS, check_reference, load_model, save_committee
from numlp.rundir import MEMBERS_FOLDER, RUN_FILES, RunDirError, claim_run_dir


def model_file(path) -> Path:
    """A run folder's ``model.npz``, or the file itself."""
    path = Path(path)
    return path / "model.npz" if path.is_dir() else path


def gather(paths) -> tuple[Committee, dict, list[dict]]:
    """The committee of the models in ``paths`` (run folders or model files; a committee file
    gives its members). Returns it with the facts its members share (dataset, class names,
    preprocessing) and each member's training summary. Raises ValueError naming the first
    model that disagrees with the first one, or that is a copy of one given before."""
    members, training, facts, first = [], [], None, None
    seen: dict[str, str] = {}  # a member's weights' digest -> where it was given
    for path in paths:
        model, header = load_model(model_file(path))
        if facts is None:
            facts, first = {key: header.get(key) for key in SHARED_FACTS}, model
        check_reference(str(path), header, model, facts, first.input_shape, first.classes)
        for member in model.members:
            digest = _weights_digest(member)
            if digest in seen:
                raise ValueError(
                    f"{path} holds a model already given ({seen[digest]}): copies in a "
                    "committee vote as one; join models trained apart (other seeds or recipes)"
                )
            seen[digest] = str(path)
        members += model.members
        if "members" in header:  # a committee file: its members' own summaries
            training += [m.get("training", {}) for m in header["members"]]
        else:
            training.append({**header.get("training", {}), "source": str(path)})
    committee = Committee(members)  # refuses fewer than two
    return committee, {k: v for k, v in facts.items() if v is not None}, training


def _weights_digest(model) -> str:
    """A digest of ``model``'s layer types and every learned array with its name, shape and
    dtype: two members with the same digest are the same model."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(" ".join(type(layer).__name__ for layer in model.layers).encode())
    for name, array in model.state_dict().items():
        digest.update(f"{name}{array.shape}{array.dtype.str}".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def score(committee, facts: dict, training, test, seconds=None) -> dict:
    """The committee's summary: scored on ``test`` (``(x, y)``, preprocessed as its members
    expect) once, beside its members' own figures."""
    scores = committee.evaluate(*test)
    return {
        "dataset": facts.get("dataset"),
        "members": len(committee.members),
        "test_accuracy": scores["accuracy"],
        "test_cross_entropy": scores["loss"],
        "member_test_accuracy": [t.get("test_accuracy") for t in training],
        "member_val_accuracy": [t.get("val_accuracy") for t in training],
        "seconds": seconds
        if seconds is not None
        else round(sum(t.get("seconds") or 0 for t in training), 2),
    }


def build_ensemble(paths, out, source: DataSource | None = None, overwrite: bool = False) -> dict:
    """Join the models in ``paths`` into a committee saved at ``out``: a folder (claimed as a
    run folder: refused while a run holds it, and a run already there is replaced only with
    ``overwrite``, all its files with it) or a ``.npz`` file outside any run folder (replaced
    only with ``overwrite``). Everything is checked and scored before a byte is written.
    Returns the committee's summary."""
    out, source = Path(out), source or DataSource()
    if out.suffix == ".npz":
        if any((out.parent / name).exists() for name in RUN_FILES if name != "model.npz"):
            raise RunDirError(
                f"{out.parent} is a run folder: give it as --out (with --overwrite to replace "
                "its run), or write the committee elsewhere"
            )
        if out.exists() and not overwrite:
            raise RunDirError(f"{out} exists; choose another --out or pass --overwrite")
        return _save(out, *_scored(paths, source))
    with claim_run_dir(out, overwrite=overwrite) as claim:
        scored = _scored(paths, source)
        claim.begin()
        return _save(claim.path / "model.npz", *scored)


def _scored(paths, source: DataSource):
    committee, facts, training = gather(paths)
    _, x, y = source.test_split(facts)
    return committee, facts, training, score(committee, facts, training, (x, y))


def _save(path: Path, committee, facts, training, summary) -> dict:
    save_committee(path, committee, training, **facts, training=summary)
    return {**summary, "model_path": str(path)}


def member_folder(out: Path, index: int, seed: int) -> Path:
    return Path(out) / MEMBERS_FOLDER / f"{index:02d}-seed{seed}"


def summary_line(summary: dict) -> str:
    """The committee's figures in one line, its members' range beside them."""
    members = [a for a in summary["member_test_accuracy"] if a is not None]
    spread = f"; members {min(members):.2%} to {max(members):.2%}" if members else ""
    return (
        f"committee of {summary['members']}: test accuracy {summary['test_accuracy']:.2%} "
        f"(cross-entropy {summary['test_cross_entropy']:.4f}){spread}; "
        f"{summary['seconds']:.0f}s; saved to {summary['model_path']}"
    )
