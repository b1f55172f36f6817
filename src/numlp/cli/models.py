"""Commands on a model (or committee) file: ``evaluate``, ``predict``, ``export``, ``serve``,
and ``ensemble``, which makes a committee of several."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from numlp.cli.common import CLIError


def add_commands(commands) -> None:
    from numlp.data.datasets import DATASETS

    evaluate = commands.add_parser(
        "evaluate",
        help="score a model on its dataset's test set",
        description="Loss, accuracy, per-class precision/recall/F1 and the confusion matrix.",
    )
    evaluate.add_argument("model", type=Path, help="a model.npz (or a committee's)")
    evaluate.add_argument(
        "--dataset",
        help=f"{', '.join(DATASETS)} or an imported dataset (default: the model's own)",
    )
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
        "preprocessing go into the ONNX metadata; Dropout is dropped, BatchNorm exported. A "
        "committee becomes one graph that averages its members' probabilities.",
    )
    export.add_argument("model", type=Path)
    export.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="output .onnx")
    export.add_argument("--softmax", action="store_true", help="output probabilities, not logits")
    export.add_argument("--opset", type=int, default=17)
    export.set_defaults(handler=cmd_export)

    ensemble = commands.add_parser(
        "ensemble",
        help="join trained models into a committee that averages their probabilities",
        description="Join run folders (or model files; a committee gives its members) into one "
        "committee file, score it once on the test set and save it. The models must take the "
        "same input and name the same classes of the same dataset. The committee works with "
        "evaluate, predict, serve, report and export like a single model. To train one: "
        "numlp train --members N.",
    )
    ensemble.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    ensemble.add_argument(
        "--out", type=Path, required=True, help="committee.npz, or a folder for its model.npz"
    )
    ensemble.add_argument("--data-dir", type=Path)
    ensemble.add_argument("--no-download", action="store_true")
    ensemble.add_argument("--overwrite", action="store_true", help="replace an existing file")
    ensemble.set_defaults(handler=cmd_ensemble)

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


def cmd_evaluate(args) -> int:
    from numlp.checks import as_model_input, printable
    from numlp.data.datasets import DataSource
    from numlp.io import load_model
    from numlp.metrics import confusion_matrix, format_report, per_class_scores
    from numlp.parts import loss_words, reported_loss

    model, header = load_model(args.model)
    source = DataSource(args.data_dir, not args.no_download)
    data, x, y = source.test_split(header, args.dataset)
    try:  # a model of flattened inputs (784,) takes the 28x28 images too
        x = as_model_input(x, model.input_shape, f"{data.name} test images")
    except ValueError as err:
        raise CLIError(f"{args.model}: {err}") from None
    settings = header.get("training", {}).get("config")
    loss = reported_loss(settings) or model.default_loss()
    scores = model.evaluate(x, y, loss=loss)
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
    what = "rows" if (header.get("inputs") or {}).get("kind") == "table" else "images"
    print(f"{data.name} test set: {len(y):,} {what}")
    name = loss_words((settings or {}).get("loss"), loss)
    print(f"accuracy {scores['accuracy']:.2%}  {name} {scores['loss']:.4f}")
    print()
    print(format_report(cm, [printable(n) for n in names]))
    return 0


def cmd_predict(args) -> int:
    from numlp import preprocess
    from numlp.checks import as_model_input, printable
    from numlp.io import class_names, load_model
    from numlp.metrics import top_classes

    if args.top < 1:
        raise CLIError("--top must be at least 1")
    model, header = load_model(args.model)
    names = class_names(header, model.classes)
    results = []
    for path in args.files:
        try:
            array = preprocess.check_raw(_read_inputs(path, header), header.get("preprocessing"))
            images = as_model_input(array, model.input_shape, str(path))
        except ValueError as err:
            raise CLIError(
                f"{err}" if str(err).startswith(str(path)) else f"{path}: {err}"
            ) from None
        x = preprocess.apply(images, header.get("preprocessing"))
        _check_model_fits(model, x, path)
        proba = model.predict_proba(x)
        for i, row in enumerate(proba):
            top = top_classes(row, names, args.top)
            results.append({"file": str(path), "index": i, "top": top, "one": len(proba) == 1})
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "one"} for r in results]))
    else:
        for r in results:
            shown = "  ".join(f"{t['class']} ({t['probability']:.1%})" for t in r["top"])
            where = r["file"] if r["one"] else f"{r['file']}[{r['index']}]"  # a picture: itself
            print(printable(f"{where}: {shown}"))
    return 0


def cmd_export(args) -> int:
    from numlp.export import export_onnx
    from numlp.io import load_model

    model, header = load_model(args.model)
    metadata = {k: header[k] for k in ("class_names", "preprocessing", "dataset") if k in header}
    path = export_onnx(model, args.onnx, metadata, softmax=args.softmax, opset=args.opset)
    print(f"wrote {path}")
    return 0


def cmd_ensemble(args) -> int:
    from numlp.data.datasets import DataSource
    from numlp.ensemble import build_ensemble, summary_line

    source = DataSource(args.data_dir, not args.no_download)
    summary = build_ensemble(args.runs, args.out, source, overwrite=args.overwrite)
    print(summary_line(summary))
    return 0


def cmd_serve(args) -> int:
    from numlp.serve import serve

    serve(args.model, args.host, args.port, args.max_bytes)
    return 0


IDX_TYPES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)  # the third byte of an IDX file


def _read_inputs(path: Path, header: dict) -> np.ndarray:
    """What ``path`` holds, read as the model's data were: rows of a CSV for a model trained
    on a table, else pictures (prepared as its dataset's were) and arrays."""
    inputs = header.get("inputs") or {}
    if inputs.get("kind") == "table":
        from numlp.data.own import table_input

        if not path.is_file():
            raise CLIError(f"{path}: no such file")
        return table_input(path, inputs)
    return _read_array_file(path, inputs)


def _read_array_file(path: Path, inputs: dict | None = None) -> np.ndarray:
    """The images in ``path``, told apart by their first bytes (not the file's name): a
    ``.npy`` array, an IDX file (plain or gzip), else a picture for Pillow to read."""
    from numlp.data.idx import IDXError, read_idx

    if not path.is_file():
        raise CLIError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x93NUM"):
        from numlp.npyfile import read_npy

        return read_npy(path)
    if head[:2] == b"\x1f\x8b" or (len(head) == 4 and head[:2] == b"\0\0" and head[2] in IDX_TYPES):
        try:
            return read_idx(path)
        except IDXError as err:
            raise CLIError(f"{err} (predict reads pictures, .npy and IDX files)") from None
    from numlp.data.images import ImageError, to_mnist

    try:
        if (inputs or {}).get("kind") == "pictures":  # as the model's own dataset's pictures
            from numlp.data.own import picture_input

            return picture_input(path, inputs)
        return to_mnist(path)  # uint8 (28, 28), prepared the way MNIST was
    except ImageError as err:
        message = str(err)
        prefix = "" if message.startswith(str(path)) else f"{path}: "
        raise CLIError(prefix + message) from None


def _check_model_fits(model, x: np.ndarray, source) -> None:
    if model.input_shape is not None and x.shape[1:] != tuple(model.input_shape):
        raise CLIError(
            f"{source}: the model expects inputs of shape {tuple(model.input_shape)}, "
            f"the data has {x.shape[1:]}"
        )
