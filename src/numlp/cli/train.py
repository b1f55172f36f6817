"""``numlp train`` and ``numlp presets``: flags generated from TrainConfig, run.py behind them."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

from numlp.cli.common import EXIT_INTERRUPTED, CLIError, base_config, download_progress, int_list


def add_commands(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a model and save it in a run folder",
        description="Train an MLP on an IDX dataset. Prints one line per epoch and the final test "
        "accuracy; writes model.npz, checkpoint.npz (every epoch and on Ctrl-C: what --resume "
        "continues from), metrics.jsonl and config.toml into --out. Flags override --config or "
        "--preset, which override the defaults shown in brackets.",
    )
    train.add_argument("--config", type=Path, help="TOML file of settings (keys as the flags)")
    train.add_argument(
        "--preset",
        metavar="NAME",
        help="a recipe shipped with numlp: fast (the default), quick99, best (99.3 %% MNIST), "
        "frontier (best for 60 epochs), fashion, kmnist; `numlp presets` lists them and shows "
        "their files",
    )
    train.add_argument("--data-dir", type=Path, help="folder holding the dataset's IDX files")
    _add_setting_flags(train)
    train.add_argument("--out", type=Path, help="run folder, default runs/DATASET-TIMESTAMP")
    train.add_argument("--overwrite", action="store_true", help="reuse a run folder that has files")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue RUN from its checkpoint (only --epochs may change)",
    )
    train.add_argument("--no-download", action="store_true", help="never download data")
    train.add_argument("--quiet", action="store_true", help="print only the final line")
    train.add_argument("--no-plots", action="store_true", help="do not draw plots at the end")
    train.add_argument(
        "--threads",
        metavar="N|auto",
        default=os.environ.get("NUMLP_THREADS") or "auto",
        help="BLAS threads: auto (the default, or $NUMLP_THREADS) takes the cores other "
        "processes leave free when the run starts, kept for the whole run and its resumes; a "
        "number fixes it (results are bit-identical for the same seed and thread count)",
    )
    train.set_defaults(handler=cmd_train)

    presets = commands.add_parser(
        "presets",
        help="list the training presets, or print one",
        description="The recipes `numlp train --preset NAME` uses. Each is a TOML config file; "
        "print one with --show NAME, edit it and pass it to `numlp train --config`.",
    )
    presets.add_argument("--show", metavar="NAME", help="print this preset's file")
    presets.set_defaults(handler=cmd_presets)


def _add_setting_flags(train: argparse.ArgumentParser) -> None:
    """One flag per setting of :class:`numlp.config.TrainConfig` (``lr`` -> ``--lr``), its
    type, choices, help and default read off the setting itself; the distortions in a group."""
    from numlp.config import AUGMENT_FIELDS, TRAIN_FIELDS

    augment = train.add_argument_group(
        "augmentation", "random distortions of every training image, drawn afresh each epoch"
    )
    for fields, group in ((TRAIN_FIELDS, train), (AUGMENT_FIELDS, augment)):
        for name, f in fields.items():
            flag, default = "--" + name.replace("_", "-"), f.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            options = {"dest": name, "default": None, "help": f"{f.metadata['help']} ({shown})"}
            options["help"] = options["help"].replace("%", "%%")
            if isinstance(default, bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
            elif isinstance(default, tuple):
                group.add_argument(flag, type=int_list, **options)
            else:
                choices = f.metadata.get("choices")
                group.add_argument(flag, type=type(default), choices=choices, **options)


def cmd_train(args) -> int:
    from numlp.config import SETTINGS, load_config
    from numlp.data.datasets import DataSource
    from numlp.run import Console, TrainingInterrupted, run_training
    from numlp.train import TrainingDiverged

    overrides = {key: getattr(args, key) for key in SETTINGS}
    if args.resume:
        others = [k for k, v in overrides.items() if v is not None and k != "epochs"]
        if others or args.config or args.out or args.preset:
            named = ", ".join("--" + k.replace("_", "-") for k in others)
            named = named or "--config/--preset/--out"
            raise CLIError(
                f"--resume continues a run as it was: {named} cannot be given with it "
                "(only --epochs)"
            )
        out = args.resume
        if not (out / "config.toml").is_file():
            what = "no config.toml: is it a numlp run folder?" if out.is_dir() else "no such run"
            raise CLIError(f"--resume {out}: {what}")
        config = load_config(out / "config.toml").updated(epochs=args.epochs)
    else:
        config = base_config(args.preset, args.config).updated(**overrides)
        out = args.out
    plots = None if args.no_plots else partial(_plots_after_training, args=args)
    try:
        summary = run_training(
            config,
            out,
            source=DataSource(args.data_dir, not args.no_download, download_progress()),
            console=Console(quiet=args.quiet, progress_bar=sys.stderr.isatty()),
            overwrite=args.overwrite,
            resume=bool(args.resume),
            threads=args.threads,
            on_finish=plots,
        )
    except TrainingInterrupted as stop:
        print(f"numlp: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDiverged as err:
        raise CLIError(f"training diverged: {err}") from None
    if config.members > 1 and plots is not None:
        _committee_plots(Path(summary["model_path"]).parent, args)
    return 0


def _committee_plots(out: Path, args) -> None:
    """A committee's plots, drawn from its file and test set once the members are joined."""
    from numlp.report import PlotsUnavailable, make_run_plots

    try:
        paths = make_run_plots(out, args.data_dir)
    except PlotsUnavailable as err:
        print(f"no plots: {err}", file=sys.stderr)
        return
    if not args.quiet:
        print(f"plots: {', '.join(p.name for p in paths.values())}")


def _plots_after_training(out: Path, trained, args) -> None:
    """The run's plots, drawn from the model and test set still in memory."""
    from numlp.report import PlotsUnavailable, plot_run

    data = trained.data
    try:
        paths = plot_run(
            out, trained.model, data.class_names, data.x_test, trained.x_test, data.y_test
        )
    except PlotsUnavailable as err:
        print(f"no plots: {err}", file=sys.stderr)
        return
    if not args.quiet:
        print(
            f"plots: {', '.join(p.name for p in paths.values())} (numlp report {out} "
            "makes an HTML page)"
        )


def cmd_presets(args) -> int:
    from numlp.config import preset_description, preset_names, preset_path

    if args.show:
        print(preset_path(args.show).read_text(encoding="utf-8"), end="")
        return 0
    for name in preset_names():
        print(f"{name:<9} {preset_description(name).removeprefix(name + ':').strip()}")
    print(f"\nfiles in {preset_path(preset_names()[0]).parent}; `numlp presets --show NAME`")
    return 0
