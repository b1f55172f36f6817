"""Committees as runs: built from finished runs, or trained member by member.

``numlp ensemble RUN...`` joins trained models into one committee file
(:func:`build_ensemble`); ``numlp train --members N`` trains N members from seeds ``seed``,
``seed + 1``... into ``OUT/members/`` and joins them into ``OUT/model.npz``
(:func:`train_committee`). Each member is an ordinary run folder, so an interrupted committee
resumes member by member, and the committee's test set is scored once, at the end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from numlp.atomic import atomic_write_text
from numlp.committee import Committee
from numlp.config import TrainConfig, to_toml
from numlp.io import load_model, save_committee
from numlp.run import TrainingInterrupted, load_split, run_training
from numlp.rundir import claim_run_dir

SHARED = ("dataset", "class_names", "preprocessing")  # what every member must agree on
MEMBERS_FOLDER = "members"


class CommitteeInterrupted(TrainingInterrupted):
    """Ctrl-C stopped a member; the message says how to resume the whole committee."""

    def __init__(self, out: Path, member: int, stop: TrainingInterrupted):
        self.out, self.epoch, self.batch = out, stop.epoch, stop.batch
        Exception.__init__(
            self,
            f"interrupted in member {member + 1}, epoch {stop.epoch + 1} (its checkpoint is "
            f"saved). Resume the committee with: numlp train --resume {out}",
        )


def model_file(path) -> Path:
    """A run folder's ``model.npz``, or the file itself."""
    path = Path(path)
    return path / "model.npz" if path.is_dir() else path


def gather(paths) -> tuple[Committee, dict, list[dict]]:
    """The committee of the models in ``paths`` (run folders or model files; a committee file
    gives its members). Returns it with the metadata its members share (dataset, class names,
    preprocessing) and each member's training summary. Raises ValueError naming the first
    model that disagrees with the first one."""
    members, training, shared, first = [], [], None, None
    for path in paths:
        model, header = load_model(model_file(path))
        own = {key: header.get(key) for key in SHARED}
        if shared is None:
            shared, first = own, path
        for key in SHARED:
            if own[key] != shared[key]:
                raise ValueError(
                    f"{path}: its {key.replace('_', ' ')} {own[key]!r} differs from "
                    f"{first}'s {shared[key]!r}; a committee's members must agree"
                )
        if isinstance(model, Committee):
            members += model.members
            training += [m.get("training", {}) for m in header["members"]]
        else:
            members.append(model)
            training.append({**header.get("training", {}), "source": str(path)})
    committee = Committee(members)  # refuses fewer than two
    return committee, {k: v for k, v in shared.items() if v is not None}, training


def score_and_save(committee, metadata, training, out: Path, data_dir, download, seconds=None):
    """Score the committee on its dataset's test set (once) and save it to ``out``; returns
    the committee's training summary (test accuracy and loss, members' own figures)."""
    _, x, y = load_split(metadata, None, data_dir, download)
    scores = committee.evaluate(x, y)
    member_tests = [t.get("test_accuracy") for t in training]
    summary = {
        "dataset": metadata.get("dataset"),
        "members": len(committee.members),
        "test_accuracy": scores["accuracy"],
        "test_cross_entropy": scores["loss"],
        "member_test_accuracy": member_tests,
        "member_val_accuracy": [t.get("val_accuracy") for t in training],
        "seconds": seconds
        if seconds is not None
        else round(sum(t.get("seconds") or 0 for t in training), 2),
    }
    save_committee(out, committee, training, **metadata, training=summary)
    return summary


def build_ensemble(
    paths, out, data_dir=None, download: bool = True, overwrite: bool = False
) -> dict:
    """Join the models in ``paths`` into a committee saved at ``out`` (a ``.npz`` file, or a
    folder that then holds ``model.npz``); returns its summary. An existing committee file is
    replaced only with ``overwrite``, and only once the new one is scored."""
    out = Path(out)
    folder = out.suffix != ".npz"
    target = out / "model.npz" if folder else out
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; choose another --out or pass --overwrite")
    committee, metadata, training = gather(paths)
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    summary = score_and_save(committee, metadata, training, target, data_dir, download)
    return {**summary, "model_path": str(target)}


def member_folder(out: Path, index: int, seed: int) -> Path:
    return Path(out) / MEMBERS_FOLDER / f"{index:02d}-seed{seed}"


def train_committee(
    config: TrainConfig,
    out,
    data_dir=None,
    download: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    stream=None,
    **run_options,
) -> dict:
    """Train ``config.members`` models, seeds ``config.seed + i``, each a run folder of its
    own in ``out/members/``, then join them into the committee ``out/model.npz`` and score it on
    the test set once. With ``resume`` every member goes on from where it stopped (finished
    members are kept; ``epochs`` may grow). ``run_options`` go to each member's
    :func:`numlp.run.run_training`. Returns the committee's summary."""
    config.validate()
    stream = stream or sys.stdout
    out = Path(out or f"runs/{config.dataset}-committee-{time.strftime('%Y%m%d-%H%M%S')}")
    started = time.perf_counter()
    with claim_run_dir(out, overwrite=overwrite, resume=resume) as claim:
        if not resume:
            claim.clear_previous()
        atomic_write_text(out / "config.toml", to_toml(config))
        folders = []
        for i in range(config.members):
            member = config.updated(members=1, seed=config.seed + i)
            folder = member_folder(out, i, member.seed)
            if not run_options.get("quiet"):
                print(f"member {i + 1}/{config.members} (seed {member.seed}): {folder}",
                      file=stream)  # fmt: skip
            try:
                _train_member(member, folder, data_dir, download, overwrite, stream, run_options)
            except TrainingInterrupted as stop:
                raise CommitteeInterrupted(out, i, stop) from None
            folders.append(folder)
        committee, metadata, training = gather(folders)
        seconds = round(time.perf_counter() - started, 2)
        summary = score_and_save(
            committee, metadata, training, out / "model.npz", data_dir, download, seconds
        )
    summary["model_path"] = str(out / "model.npz")
    print(summary_line(summary), file=stream, flush=True)
    return summary


def _train_member(config, folder: Path, data_dir, download, overwrite, stream, run_options):
    """One member: kept when already trained this far, resumed from its checkpoint, or new."""
    done = folder / "model.npz"
    if done.is_file() and not overwrite:
        epochs = load_model(done)[1].get("training", {}).get("epochs", 0)
        if epochs >= config.epochs:
            if not run_options.get("quiet"):
                print(f"  already trained ({epochs} epochs)", file=stream)
            return
    resume = (folder / "checkpoint.npz").is_file() and not overwrite
    run_training(
        config,
        folder,
        data_dir=data_dir,
        download=download,
        overwrite=not resume,  # a member folder without a checkpoint holds nothing to keep
        resume=resume,
        stream=stream,
        **run_options,
    )


def summary_line(summary: dict) -> str:
    """The committee's figures in one line, its members' range beside them."""
    members = [a for a in summary["member_test_accuracy"] if a is not None]
    spread = f"; members {min(members):.2%} to {max(members):.2%}" if members else ""
    return (
        f"committee of {summary['members']}: test accuracy {summary['test_accuracy']:.2%} "
        f"(cross-entropy {summary['test_cross_entropy']:.4f}){spread}; "
        f"{summary['seconds']:.0f}s; saved to {summary['model_path']}"
    )
