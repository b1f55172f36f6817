"""Committees of a preset's models and students distilled from one: the committee rows of
README's presets table.

    python benchmarks/committees.py --preset best --committees 2 --members 5 --students 10 11 12 \
        --jobs 2 --out bench-committees --json benchmarks/results/committees-DATE.json
    python benchmarks/committees.py --preset fashion --committees 2 --members 5 --jobs 2 \
        --out bench-fashion --json ...
    python benchmarks/committees.py --epochs 1 --hidden 16 --committees 1 --members 2 \
        --students 5 --out /tmp/x                                       # a smoke run
    python benchmarks/committees.py --preset best --committees 2 --jobs 2 --recipe "" \
        --recipe "--epochs 60" --recipe "--epochs 60 --hidden 2048,2048" ...  # diverse members

Members are ``numlp train --preset P --seed S --threads 1`` runs, ``--jobs`` at a time (on two
cores two one-thread runs train faster than one two-thread run); committee ``c`` takes seeds
``c*members`` to ``c*members + members - 1``, so committees never share a member. They are
joined by ``numlp ensemble``, which scores each committee on the test set once. Students train
the same preset with ``--teacher`` the first committee, from seeds of their own. With
``--reuse`` finished runs in ``--out`` are kept, so an interrupted benchmark goes on.

With ``--recipe FLAGS`` (repeated) the members differ by recipe instead of by seed: committee
``c`` has one member per recipe (the preset plus those flags), all trained with seed ``c``.
Its members then share one validation split, so the committee's validation accuracy is a
clean figure too, and is reported beside each member's. ``--distil-each`` then distils one
student from each committee with the same seed: the student's validation images are ones its
teacher never trained on (``--student-preset`` may differ from the members', e.g. ``frontier``,
and ``--student-recipe FLAGS`` adds flags of its own, e.g. ``"--label-smoothing 0"``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from neighbours import emit


def numlp(*args) -> None:
    done = subprocess.run([sys.executable, "-m", "numlp", *map(str, args)], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"numlp {' '.join(map(str, args))}: {done.stderr.strip()}")


def header(model: Path) -> dict:
    import numpy as np

    return json.loads(np.load(model)["__header__"].tobytes())


TRAINED = []  # the runs this invocation trained (not reused): its wall time is theirs


def train(out: Path, seed: int, args, *extra, preset: str | None = None) -> dict:
    """One run of ``preset`` (default ``--preset``), skipped when ``--reuse`` finds it
    finished; its figures."""
    if not (args.reuse and (out / "model.npz").is_file()):
        TRAINED.append(out)
        argv = ["train", "--preset", preset or args.preset, "--seed", seed, "--threads", 1,
                "--out", out, "--overwrite", "--quiet", "--no-plots", *extra]  # fmt: skip
        for flag in ("epochs", "hidden", "data_dir"):
            if getattr(args, flag) is not None:
                argv += ["--" + flag.replace("_", "-"), getattr(args, flag)]
        numlp(*argv)
    training = header(out / "model.npz")["training"]
    figures = ("epochs", "seconds", "val_accuracy", "test_accuracy")
    return {key: training.get(key) for key in figures} | {"seed": seed, "run": str(out)}


def spread(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def member_plan(args) -> list[tuple[Path, int, list[str], dict]]:
    """(run folder, seed, extra flags, what to record) of every member of every committee."""
    if not args.recipe:
        return [(args.out / f"member-s{s}", s, [], {"committee": s // args.members})
                for s in range(args.committees * args.members)]  # fmt: skip
    return [(args.out / f"member-s{c}-r{r}", c, shlex.split(recipe),
             {"committee": c, "recipe": recipe})
            for c in range(args.committees) for r, recipe in enumerate(args.recipe)]  # fmt: skip


def student_plan(args) -> list[tuple[Path, int, Path, dict]]:
    """(run folder, seed, teacher, what to record) of every student: from the first committee
    with seeds of their own, or with ``--distil-each`` one per committee with its seed."""
    if args.distil_each:
        return [(args.out / f"student-c{c}", c, args.out / f"committee-{c}" / "model.npz",
                 {"committee": c}) for c in range(args.committees)]  # fmt: skip
    teacher = args.out / "committee-0" / "model.npz"
    return [(args.out / f"student-s{s}", s, teacher, {"committee": 0}) for s in args.students]


def distil(plan: tuple[Path, int, Path, dict], args) -> dict:
    """Train one student of ``plan`` on its teacher's probabilities and the labels."""
    out, seed, teacher, record = plan
    flags = ["--teacher", teacher.resolve(), "--distill-temperature", args.temperature,
             "--distill-weight", args.weight, *shlex.split(args.student_recipe)]  # fmt: skip
    return train(out, seed, args, *flags, preset=args.student_preset) | record


def committee(c: int, members: list[dict], args) -> dict:
    """Join committee ``c``'s members with ``numlp ensemble`` (which scores it on the test
    set once); with recipes, also score it on the validation split its members share."""
    chosen = [m for m in members if m["committee"] == c]
    out = args.out / f"committee-{c}"
    if not (args.reuse and (out / "model.npz").is_file()):
        extra = ["--data-dir", args.data_dir] if args.data_dir else []
        numlp("ensemble", *[m["run"] for m in chosen], "--out", out, "--overwrite", *extra)
    training = header(out / "model.npz")["training"]
    result = {
        "seeds": [m["seed"] for m in chosen],
        "test_accuracy": training["test_accuracy"],
        "members_test_accuracy": [m["test_accuracy"] for m in chosen],
        "member_seconds": sum(m["seconds"] for m in chosen),
    }
    if args.recipe:
        result["val_accuracy"] = shared_split_accuracy(out / "model.npz", chosen[0]["run"], args)
        result["members_val_accuracy"] = [m["val_accuracy"] for m in chosen]
    return result


def shared_split_accuracy(model_path: Path, member_run: str, args) -> float:
    """Accuracy of a committee on the validation split its members were trained without:
    the split ``fit`` draws first from the members' common seed."""
    import numpy as np

    from numlp.data import load_dataset
    from numlp.io import load_model
    from numlp.preprocess import apply
    from numlp.train import validation_indices

    config = header(Path(member_run) / "model.npz")["training"]["config"]
    model, model_header = load_model(model_path)
    data = load_dataset(config["dataset"], data_dir=args.data_dir, download=False)
    rng = np.random.default_rng(config["seed"])
    _, val = validation_indices(len(data.x_train), config["val_split"], rng)
    x = apply(data.x_train[val], model_header.get("preprocessing"))
    return float(np.mean(model.predict(x) == data.y_train[val]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="best")
    parser.add_argument("--committees", type=int, default=2)
    parser.add_argument("--members", type=int, default=5, help="per committee (without --recipe)")
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        help="a member's flags on top of the preset (repeat: one per member)",
    )
    parser.add_argument("--students", type=int, nargs="*", default=[], help="their seeds")
    parser.add_argument(
        "--distil-each",
        action="store_true",
        help="with --recipe: one student per committee, with its members' seed and split",
    )
    parser.add_argument("--student-preset", help="the students' preset (default: --preset)")
    parser.add_argument(
        "--student-recipe", default="", help="the students' flags on top of their preset"
    )
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--weight", type=float, default=0.7, help="on the teacher's targets")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="override the preset's (smoke runs)")
    parser.add_argument("--hidden", help="override the preset's widths (smoke runs)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench-committees"))
    parser.add_argument("--reuse", action="store_true", help="keep finished runs in --out")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--note", help="how reused runs were made, kept in the JSON")
    given = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    args = parser.parse_args(given)
    if args.distil_each and (args.students or not args.recipe):
        parser.error("--distil-each needs --recipe (members sharing a seed) and no --students")

    started = time.perf_counter()
    plan = member_plan(args)
    with ThreadPoolExecutor(args.jobs) as pool:
        members = list(pool.map(lambda m: train(m[0], m[1], args, *m[2]) | m[3], plan))
    members_wall = time.perf_counter() - started
    committees = [committee(c, members, args) for c in range(args.committees)]
    with ThreadPoolExecutor(args.jobs) as pool:
        students = list(pool.map(lambda plan: distil(plan, args), student_plan(args)))
    result = {
        # quoted, so that a recipe's flags stay one argument when the command is run again
        "command": shlex.join(["python", "benchmarks/committees.py", *given]),
        "preset": args.preset,
        "members": members,
        "member_test_accuracy": spread([m["test_accuracy"] for m in members]),
        # None when every member was reused: then the wall time was not measured here
        "members_wall_seconds": round(members_wall, 1) if TRAINED else None,
        "committees": committees,
        "committee_test_accuracy": spread([c["test_accuracy"] for c in committees]),
        "students": students,
        "distillation": {
            "preset": args.student_preset or args.preset,
            "recipe": args.student_recipe,
            "temperature": args.temperature,
            "weight": args.weight,
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if args.note:
        result["note"] = args.note
    if students:
        result["student_test_accuracy"] = spread([s["test_accuracy"] for s in students])
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
