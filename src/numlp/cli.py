"""The ``numlp`` command: a thin shell over the Python API.

User errors (bad flags, missing or damaged files, invalid models) print one line,
``numlp: error: ...``, and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

from numlp._version import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_SHOWN = 400  # images in one `numlp data show` grid (20 x 20)


class CLIError(Exception):
    """An error to report in one line (exit status 2)."""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths such as 512,256, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive widths such as 512,256, got {text!r}")
    return values


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
                group.add_argument(flag, type=_int_list, **options)
            else:
                choices = f.metadata.get("choices")
                group.add_argument(flag, type=type(default), choices=choices, **options)


def build_parser() -> argparse.ArgumentParser:
    from numlp.data.datasets import DATASETS

    parser = argparse.ArgumentParser(
        prog="numlp",
        description="Multilayer perceptrons from scratch in NumPy: train, evaluate, predict.",
        epilog="Run `numlp COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"numlp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

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
        help="a recipe shipped with numlp: fast (the default), best (99 %% MNIST), fashion, "
        "kmnist; `numlp presets` lists them and shows their files",
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
    train.set_defaults(handler=cmd_train)

    presets = commands.add_parser(
        "presets",
        help="list the training presets, or print one",
        description="The recipes `numlp train --preset NAME` uses. Each is a TOML config file; "
        "print one with --show NAME, edit it and pass it to `numlp train --config`.",
    )
    presets.add_argument("--show", metavar="NAME", help="print this preset's file")
    presets.set_defaults(handler=cmd_presets)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a model on its dataset's test set",
        description="Loss, accuracy, per-class precision/recall/F1 and the confusion matrix.",
    )
    evaluate.add_argument("model", type=Path, help="a model.npz")
    evaluate.add_argument("--dataset", choices=list(DATASETS), help="default: the model's own")
    evaluate.add_argument("--data-dir", type=Path)
    evaluate.add_argument("--no-download", action="store_true")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of tables")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser(
        "predict",
        help="classify pictures (PNG, JPG...) or arrays of images (.npy, IDX)",
        description="Classify pictures of digits (PNG/JPG/BMP/GIF...: grayscale, inverted when "
        "the background is light, cropped to the ink, fitted to 20x20, centred by mass in 28x28, "
        "as MNIST was made; needs numlp[images]) and every image in .npy or IDX files: (28, 28), "
        "(n, 28, 28) or (n, 784) arrays. Integer pixels (0..255) get the model's preprocessing; "
        "float arrays are used as they are. Prints the top classes with probabilities.",
    )
    predict.add_argument("model", type=Path)
    predict.add_argument("files", type=Path, nargs="+", metavar="FILE")
    predict.add_argument("--top", type=int, default=3, help="classes to show per image")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(handler=cmd_predict)

    export = commands.add_parser(
        "export",
        help="export a model to ONNX",
        description="Write MODEL as ONNX (needs: pip install 'numlp[onnx]'). Class names and "
        "preprocessing go into the ONNX metadata; Dropout is dropped, BatchNorm exported.",
    )
    export.add_argument("model", type=Path)
    export.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="output .onnx")
    export.add_argument("--softmax", action="store_true", help="output probabilities, not logits")
    export.add_argument("--opset", type=int, default=17)
    export.set_defaults(handler=cmd_export)

    serve = commands.add_parser(
        "serve",
        help="a local web page to draw digits and see the model's answer",
        description="Serve MODEL at http://HOST:PORT/: a drawing canvas with live predictions, "
        'POST /predict (PNG/JPEG or JSON {"pixels": 28x28}), GET /health, GET /model. '
        "Needs numlp[serve].",
    )
    serve.add_argument("model", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-bytes", type=int, default=2_000_000, help="request size limit")
    serve.set_defaults(handler=cmd_serve)

    plot = commands.add_parser(
        "plot",
        help="draw a run's plots (curves, confusion, mistakes, weights, per class)",
        description="Write the PNG plots of a run folder into it (needs numlp[plots]).",
    )
    plot.add_argument("run", type=Path)
    plot.add_argument("--data-dir", type=Path)
    plot.set_defaults(handler=cmd_plot)

    report = commands.add_parser(
        "report",
        help="one self-contained HTML page of a run",
        description="Write RUN/report.html with the settings, figures and plots embedded.",
    )
    report.add_argument("run", type=Path)
    report.add_argument("--out", type=Path, help="default RUN/report.html")
    report.add_argument("--data-dir", type=Path)
    report.set_defaults(handler=cmd_report)

    compare = commands.add_parser(
        "compare",
        help="overlay several runs' curves and tabulate their results",
    )
    compare.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    compare.add_argument("--out", type=Path, default=Path("compare.png"), help="the plot")
    compare.set_defaults(handler=cmd_compare)

    bench = commands.add_parser(
        "bench",
        help="how fast numlp trains here, against the machine's matmul ceiling",
        description="Seconds per W1 epoch, GFLOP/s against the machine's float32 matmul "
        "ceiling, and peak RSS. Peers side by side: python benchmarks/speed.py.",
        add_help=False,
    )
    bench.set_defaults(handler=cmd_bench)

    data = commands.add_parser("data", help="list, fetch, verify and import datasets")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    listing = data_commands.add_parser("list", help="known datasets and where they are found")
    listing.add_argument("--data-dir", type=Path)
    listing.set_defaults(handler=cmd_data_list)
    fetch = data_commands.add_parser("fetch", help="download and verify a dataset")
    fetch.add_argument("name", choices=list(DATASETS))
    fetch.add_argument("--data-dir", type=Path, help="where to put it (default: the user cache)")
    fetch.add_argument("--mirror", action="append", help="base URL to try (repeatable)")
    fetch.set_defaults(handler=cmd_data_fetch)
    verify = data_commands.add_parser("verify", help="check a dataset's files by SHA-256")
    verify.add_argument("name", choices=list(DATASETS))
    verify.add_argument("--data-dir", type=Path)
    verify.set_defaults(handler=cmd_data_verify)
    show = data_commands.add_parser("show", help="a grid of sample images with their labels")
    show.add_argument("name", choices=list(DATASETS))
    show.add_argument("--data-dir", type=Path)
    show.add_argument("--split", choices=["train", "test"], default="train")
    show.add_argument("--count", type=int, default=36)
    show.add_argument("--out", type=Path, help="default NAME-samples.png")
    show.set_defaults(handler=cmd_data_show)
    imp = data_commands.add_parser(
        "import",
        help="convert Keras mnist.npz or OpenML mnist_784.csv to IDX files",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--format", choices=["auto", "keras", "openml"], default="auto")
    imp.add_argument(
        "--out",
        type=Path,
        help="folder for the IDX files (default: the user cache, for the official MNIST only)",
    )
    imp.add_argument("--force", action="store_true", help="replace IDX files already in --out")
    imp.add_argument("--train-size", type=int, default=60000, help="CSV rows for training")
    imp.set_defaults(handler=cmd_data_import)
    return parser


# -- commands --------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from numlp.config import SETTINGS, TrainConfig, load_config, preset_path
    from numlp.run import TrainingInterrupted, run_training
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
        config = load_config(out / "config.toml").updated(epochs=args.epochs)
    else:
        if args.config and args.preset:
            raise CLIError("give --preset or --config, not both (a preset is a config file)")
        source = preset_path(args.preset) if args.preset else args.config
        config = load_config(source) if source else TrainConfig()
        config = config.updated(**overrides)
        out = args.out
    try:
        run_training(
            config,
            out,
            data_dir=args.data_dir,
            download=not args.no_download,
            overwrite=args.overwrite,
            progress=_download_progress(),
            resume=bool(args.resume),
            quiet=args.quiet,
            progress_bar=sys.stderr.isatty(),
            on_finish=None if args.no_plots else partial(_plots_after_training, args=args),
        )
    except TrainingInterrupted as stop:
        print(f"numlp: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDiverged as err:
        raise CLIError(f"training diverged: {err}") from None
    return 0


def cmd_presets(args) -> int:
    from numlp.config import preset_description, preset_names, preset_path

    if args.show:
        print(preset_path(args.show).read_text(encoding="utf-8"), end="")
        return 0
    for name in preset_names():
        print(f"{name:<9} {preset_description(name).removeprefix(name + ':').strip()}")
    print(f"\nfiles in {preset_path(preset_names()[0]).parent}; `numlp presets --show NAME`")
    return 0


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


def cmd_serve(args) -> int:
    from numlp.serve import serve

    serve(args.model, args.host, args.port, args.max_bytes)
    return 0


def cmd_plot(args) -> int:
    from numlp.report import make_run_plots

    paths = make_run_plots(args.run, args.data_dir)
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from numlp.report import PLOT_FILES, PlotsUnavailable, html_report, make_run_plots

    if not all((args.run / f).exists() for f in PLOT_FILES.values() if f != "first_layer.png"):
        try:
            make_run_plots(args.run, args.data_dir)
        except PlotsUnavailable as err:
            print(f"numlp: the report will have no plots: {err}", file=sys.stderr)
    print(f"wrote {html_report(args.run, args.out)}")
    return 0


def cmd_compare(args) -> int:
    from numlp.io import read_header
    from numlp.report import PlotsUnavailable, plot_comparison, read_metrics

    runs = {}
    print(f"{'run':<30} {'epochs':>6} {'val acc':>8} {'test acc':>8} {'seconds':>8}")
    for run in args.runs:
        records = read_metrics(run)
        runs[run.name if run.name not in runs else str(run)] = records
        model_file = run / "model.npz"
        training = read_header(model_file).get("training", {}) if model_file.exists() else {}
        val = records[-1].get("val_accuracy") if records else None
        test = training.get("test_accuracy")
        seconds = sum(r.get("seconds", 0) for r in records)
        print(f"{str(run):<30} {len(records):>6} {_pct(val):>8} {_pct(test):>8} {seconds:>8.1f}")
    try:
        print(f"wrote {plot_comparison(runs, args.out)}")
    except PlotsUnavailable as err:
        print(f"no plot: {err}", file=sys.stderr)
    return 0


def _pct(value) -> str:
    return f"{value:.2%}" if isinstance(value, float) else "–"


def cmd_data_show(args) -> int:
    from numlp.data.datasets import load_dataset
    from numlp.report import plot_samples

    if not 1 <= args.count <= MAX_SHOWN:
        raise CLIError(f"--count must be from 1 to {MAX_SHOWN} (one picture of a grid)")
    data = load_dataset(args.name, data_dir=args.data_dir)
    if args.split == "train":
        images, labels = data.x_train, data.y_train
    else:
        images, labels = data.x_test, data.y_test
    out = args.out or Path(f"{args.name}-samples.png")
    title = f"{args.name} ({args.split}): first {args.count} images"
    path = plot_samples(images, labels, data.class_names, out, args.count, title=title)
    print(f"wrote {path}")
    return 0


def cmd_evaluate(args) -> int:
    from numlp.io import load_model
    from numlp.metrics import confusion_matrix, format_report, per_class_scores
    from numlp.run import load_split

    model, header = load_model(args.model)
    data, x, y = load_split(header, args.dataset, args.data_dir, not args.no_download)
    _check_model_fits(model, x, args.model)
    scores = model.evaluate(x, y)
    cm = confusion_matrix(y, model.predict(x), model.classes)
    names = header.get("class_names") or data.class_names
    if args.json:
        per_class = {k: v.tolist() for k, v in per_class_scores(cm).items()}
        print(
            json.dumps(
                {
                    **scores,
                    "dataset": data.name,
                    "class_names": list(names),
                    "per_class": per_class,
                    "confusion_matrix": cm.tolist(),
                }
            )
        )
        return 0
    print(f"{data.name} test set: {len(y):,} images")
    print(f"accuracy {scores['accuracy']:.2%}  cross-entropy {scores['loss']:.4f}")
    print()
    print(format_report(cm, names))
    return 0


def cmd_predict(args) -> int:
    from numlp import preprocess
    from numlp.io import class_names, load_model
    from numlp.metrics import top_classes

    if args.top < 1:
        raise CLIError("--top must be at least 1")
    model, header = load_model(args.model)
    names = class_names(header, model.classes)
    results = []
    for path in args.files:
        images = _read_array_file(path)
        if images.ndim == len(model.input_shape):
            images = images[None]
        if images.shape[1:] != tuple(model.input_shape):
            flat = int(np.prod(model.input_shape))
            if images.ndim == 2 and images.shape[1] == flat:
                images = images.reshape(len(images), *model.input_shape)
            else:
                raise CLIError(
                    f"{path}: array of shape {images.shape} does not hold "
                    f"{'x'.join(map(str, model.input_shape))} images for this model"
                )
        x = preprocess.apply(images, header.get("preprocessing"))
        _check_model_fits(model, x, path)
        proba = model.predict_proba(x)
        for i, row in enumerate(proba):
            top = top_classes(row, names, args.top)
            results.append({"file": str(path), "index": i, "top": top})
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            shown = "  ".join(f"{t['class']} ({t['probability']:.1%})" for t in r["top"])
            print(f"{r['file']}[{r['index']}]: {shown}")
    return 0


def cmd_export(args) -> int:
    from numlp.export import export_onnx
    from numlp.io import load_model

    model, header = load_model(args.model)
    metadata = {k: header[k] for k in ("class_names", "preprocessing", "dataset") if k in header}
    path = export_onnx(model, args.onnx, metadata, softmax=args.softmax, opset=args.opset)
    print(f"wrote {path}")
    return 0


def cmd_bench(args) -> int:
    from numlp.bench import main as bench_main

    return bench_main(args.bench_args)


def cmd_data_list(args) -> int:
    from numlp.data.datasets import DATASETS, locate

    for name, info in DATASETS.items():
        found = locate(name, args.data_dir)
        where = f"found in {found[1]} ({found[0]})" if found else "not found locally"
        print(f"{name:<14} {info.title}; {where}")
    return 0


def cmd_data_fetch(args) -> int:
    from numlp.data.datasets import user_cache_dir
    from numlp.data.download import fetch

    folder = args.data_dir or user_cache_dir() / args.name
    fetch(args.name, folder, mirrors=args.mirror, progress=_download_progress())
    print(f"{args.name}: all files verified in {folder}")
    return 0


def cmd_data_verify(args) -> int:
    from numlp.data.datasets import (
        dataset_info,
        find_file,
        locate,
        not_found_message,
        read_verified,
    )

    found = locate(args.name, args.data_dir)
    if found is None:
        raise CLIError(not_found_message(args.name, args.data_dir))
    folder = found[1]
    for file in dataset_info(args.name).files.values():
        path = find_file(folder, file)
        array = read_verified(path, file, folder)
        print(f"ok  {path}  {array.shape} {array.dtype}")
    print(f"{args.name}: all four files verified by SHA-256 of their content")
    return 0


def cmd_data_import(args) -> int:
    """Convert into a staging folder first; only then decide where the files may go, so that
    nothing verified is ever replaced by other content and a failure leaves nothing behind."""
    import shutil
    import tempfile

    from numlp.data.convert import content_hashes, import_keras_npz, import_openml_csv
    from numlp.data.datasets import DATASETS, user_cache_dir

    kind = args.format
    if kind == "auto":
        kind = {".npz": "keras", ".csv": "openml"}.get(args.file.suffix.lower())
        if kind is None:
            raise CLIError(f"{args.file}: cannot tell the format from the name; pass --format")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file, not a folder")
    target = args.out or user_cache_dir() / "mnist"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".numlp-import-", dir=target.parent))
    try:
        if kind == "keras":
            paths = import_keras_npz(args.file, staging)
        else:
            paths = import_openml_csv(args.file, staging, args.train_size)
        official = {r: f.content_sha256 for r, f in DATASETS["mnist"].files.items()}
        is_official = content_hashes(paths) == official
        if not _check_import_target(args, target, is_official):
            print(f"{target} already holds the verified MNIST files; nothing was changed")
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for path in paths.values():
            for old in (target / path.name, target / path.name.removesuffix(".gz")):
                old.unlink(missing_ok=True)  # a stale uncompressed twin would be found first
            os.replace(path, target / path.name)
            print(f"wrote {target / path.name}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if is_official:
        print("the content is identical to the official MNIST files")
    else:
        print(
            "note: the content differs from the official MNIST files; load this folder with "
            "the Python API (numlp.data.read_idx), not as --dataset mnist"
        )
    return 0


def _check_import_target(args, target: Path, is_official: bool) -> bool:
    """Whether to move the imported files into ``target``; refuses (CLIError) where they
    would replace data the user has."""
    from numlp.data.datasets import DATASETS, DataError, find_file, load_dataset

    held = [f.name for f in DATASETS["mnist"].files.values() if find_file(target, f)]
    if args.out is None:
        if not is_official:
            raise CLIError(
                f"{args.file} is not the official MNIST content, so it does not go into the "
                f"MNIST cache ({target}); pass --out DIR to write it to a folder of its own"
            )
        if held:
            try:
                load_dataset("mnist", data_dir=target, download=False)
            except DataError:
                return True  # what is there is damaged: the verified import repairs it
            return False  # the same verified content is already there
    elif held and not args.force:
        raise CLIError(
            f"{target} already holds IDX files ({', '.join(held)}); choose another --out, or "
            "pass --force to replace them"
        )
    return True


# -- helpers ---------------------------------------------------------------------------------


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _read_array_file(path: Path) -> np.ndarray:
    from numlp.data.idx import IDXError, read_idx

    if not path.is_file():
        raise CLIError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from numlp.data.images import ImageError, to_mnist

        try:
            return to_mnist(path)  # uint8 (28, 28), prepared the way MNIST was
        except ImageError as err:
            message = str(err)
            prefix = "" if message.startswith(str(path)) else f"{path}: "
            raise CLIError(prefix + message) from None
    if path.suffix == ".npy":
        from numlp.npyfile import read_npy

        return read_npy(path)
    try:
        return read_idx(path)
    except IDXError as err:
        raise CLIError(f"{err} (predict reads .npy and IDX files)") from None


def _check_model_fits(model, x: np.ndarray, source) -> None:
    if model.input_shape is not None and x.shape[1:] != tuple(model.input_shape):
        raise CLIError(
            f"{source}: the model expects inputs of shape {tuple(model.input_shape)}, "
            f"the data has {x.shape[1:]}"
        )


def _download_progress():
    """A per-file progress callback: tqdm if installed and on a terminal, else quiet."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return _plain_progress()
    bars = {}

    def update(name, done, total):
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, desc=name, unit="B", unit_scale=True, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _plain_progress():
    def update(name, done, total):
        end = "\n" if done >= total else "\r"
        print(f"  {name}: {done / total:6.1%} of {total / 1e6:.1f} MB", end=end, file=sys.stderr)

    return update


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after the command `bench` belongs to the benchmark's own parser; only the
    # command word counts (an option value such as `--out bench` does not).
    at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if at is not None and argv[at] == "bench":
        args = parser.parse_args(argv[: at + 1])
        args.bench_args = argv[at + 1 :]
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from numlp.data.datasets import DataError
    from numlp.train import TrainingDiverged

    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader went away (`numlp ... | head`): not an error. Point stdout at /dev/null so
        # that Python's own flush at exit does not complain a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("numlp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportError as err:  # an optional dependency; its message says what to install
        if args.debug:
            raise
        print(f"numlp: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (CLIError, DataError, ValueError, OSError, TrainingDiverged) as err:
        if args.debug:
            raise
        message = " ".join(str(err).split()) if not isinstance(err, OSError) else _os_error(err)
        print(f"numlp: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def _os_error(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


if __name__ == "__main__":
    sys.exit(main())
