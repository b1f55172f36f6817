"""``numlp sweep`` and ``numlp sweep show``: the sweep package behind two commands."""

from __future__ import annotations

import sys
from pathlib import Path

from numlp.checks import printable
from numlp.cli.common import EXIT_INTERRUPTED, CLIError, base_config, download_progress


def add_commands(commands) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="search training settings with Optuna (one machine or many)",
        description="Search a space of `numlp train` settings (a TOML file: fixed values, and "
        "ranges or choices for what to search) for the best validation accuracy. Each trial is "
        "a run folder under OUT/trials; hopeless trials are pruned; the test set is never read. "
        "`numlp sweep show OUT` prints the top trials and writes the winner's config. "
        "Needs `pip install 'numlp[sweep]'`.",
        epilog="Many machines: give each the same SPACE, --preset/--config, --storage "
        "postgresql://USER@HOST/DB and --study NAME; they share the trials.",
    )
    sweep.add_argument("space", nargs="?", type=Path, help="search space file (TOML)")
    sweep.add_argument("--space", dest="space_option", type=Path, help="the same as SPACE")
    sweep.add_argument("--preset", metavar="NAME", help="start from this preset (default: fast)")
    sweep.add_argument("--config", type=Path, help="start from this config file")
    sweep.add_argument("--trials", type=int, help="trials in all, over every worker")
    sweep.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds")
    sweep.add_argument("--workers", type=int, help="local worker processes (default 1)")
    sweep.add_argument("--out", type=Path, help="sweep folder (default sweeps/STUDY or a new one)")
    sweep.add_argument("--resume", type=Path, metavar="DIR", help="go on with the sweep in DIR")
    sweep.add_argument("--storage", help="shared study database, e.g. postgresql://user@host/db")
    sweep.add_argument("--study", help="study name in --storage (the same on every machine)")
    sweep.add_argument("--pruner", choices=("median", "hyperband", "halving", "none"))
    sweep.add_argument("--threads", type=int, help="BLAS threads per worker (default: shared out)")
    sweep.add_argument(
        "--heartbeat",
        type=float,
        metavar="S",
        help="seconds between a running trial's heartbeats; a trial silent for three is "
        "failed and replaced (default 20)",
    )
    sweep.add_argument("--data-dir", type=Path, help="folder holding the dataset's IDX files")
    sweep.set_defaults(handler=cmd_sweep)

    show = commands.add_parser(
        "sweep-show",
        prog="numlp sweep show",  # no help: not listed apart (it is `sweep show`)
        description="The top trials of a sweep, its winner as a config file (best.toml, for "
        "`numlp train --config`), Optuna's plots and sweep.html.",
    )
    show.add_argument("folder", nargs="?", type=Path, help="sweep folder")
    show.add_argument("--storage", help="study database URL (instead of a folder)")
    show.add_argument("--study", help="study name in --storage")
    show.add_argument("--out", type=Path, help="where to write (default: the sweep folder)")
    show.add_argument("--top", type=int, default=10, help="trials in the table (10)")
    show.add_argument("--no-plots", action="store_true", help="write no pictures")
    show.set_defaults(handler=cmd_sweep_show)


def sweep_show_argv(argv: list[str], at: int) -> list[str]:
    """``numlp sweep show ...`` as the hidden command ``sweep-show`` parses it."""
    rest = argv[at + 1 :]
    if rest[:1] == ["show"]:
        return [*argv[:at], "sweep-show", *rest[1:]]
    return argv


def cmd_sweep(args) -> int:
    from numlp.sweep import SweepInterrupted, load_space, run_sweep

    if args.space and args.space_option:
        raise CLIError("give the search space once: SPACE or --space")
    space_path = args.space or args.space_option
    settings = {
        "trials": args.trials,
        "timeout": args.timeout,
        "workers": args.workers,
        "storage": args.storage,
        "study": args.study,
        "pruner": args.pruner,
        "threads": args.threads,
        "heartbeat": args.heartbeat,
    }
    if args.resume:
        if space_path or args.preset or args.config or args.out:
            raise CLIError(
                "--resume goes on with the saved space and settings: give no "
                "SPACE, --preset, --config or --out with it"
            )
        return _sweep(run_sweep, SweepInterrupted, None, args.resume, True, args, settings)
    if space_path is None:
        raise CLIError("give a search space file: numlp sweep SPACE.toml --trials N")
    space = load_space(space_path, base=base_config(args.preset, args.config))
    settings = {k: v for k, v in settings.items() if v is not None}
    return _sweep(run_sweep, SweepInterrupted, space, args.out, False, args, settings)


def _sweep(run_sweep, SweepInterrupted, space, out, resume, args, settings) -> int:
    if not resume:
        download_progress()  # the data are fetched (once) before any worker starts
    try:
        run_sweep(space, out=out, resume=resume, data_dir=args.data_dir, **settings)
    except SweepInterrupted as stop:
        print(f"numlp: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def cmd_sweep_show(args) -> int:
    from numlp.sweep import open_sweep, show
    from numlp.sweep.driver import default_sweep_dir

    if args.folder is None and not (args.storage and args.study):
        raise CLIError("give a sweep folder, or --storage URL and --study NAME")
    study = open_sweep(args.folder, args.storage, args.study)
    folder = args.out or args.folder or default_sweep_dir(study.study_name)
    try:
        result = show(study, folder, top=args.top, plots=not args.no_plots)
    except ImportError as err:  # plots without matplotlib: the table and best.toml still
        print(f"no plots: {err}", file=sys.stderr)
        result = show(study, folder, top=args.top, plots=False)
    print("\n".join(printable(line) for line in result["lines"]))  # trial errors name files
    for path in result["written"].values():
        print(f"wrote {path}")
    if "best" in result["written"]:
        print(
            f"retrain the winner and score it once on test: numlp train --config "
            f"{result['written']['best']}"
        )
    return 0
