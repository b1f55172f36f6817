"""``numlp data``: list, fetch, verify, show and import datasets."""

from __future__ import annotations

import os
from pathlib import Path

from numlp.cli.common import CLIError, download_progress

MAX_SHOWN = 400  # images in one `numlp data show` grid (20 x 20)


def add_commands(commands) -> None:
    from numlp.data.datasets import DATASETS

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
    imp.add_argument(
        "--name",
        help="a dataset name of its own, for content that is not the official MNIST (a subset, "
        "another CSV): `numlp train --dataset NAME` finds it (default folder: the user cache)",
    )
    imp.add_argument("--train-size", type=int, default=60000, help="CSV rows for training")
    imp.set_defaults(handler=cmd_data_import)


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
    fetch(args.name, folder, mirrors=args.mirror, progress=download_progress())
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


def cmd_data_import(args) -> int:
    """Convert into a staging folder first; only then decide where the files may go, so that
    nothing verified is ever replaced by other content and a failure leaves nothing behind."""
    import shutil
    import tempfile

    from numlp.data.catalog import NAME_PATTERN, write_manifest
    from numlp.data.convert import CLASSES, content_hashes, import_keras_npz, import_openml_csv
    from numlp.data.datasets import DATASETS, user_cache_dir

    kind = args.format
    if kind == "auto":
        kind = {".npz": "keras", ".csv": "openml"}.get(args.file.suffix.lower())
        if kind is None:
            raise CLIError(f"{args.file}: cannot tell the format from the name; pass --format")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file, not a folder")
    if args.name is not None and (not NAME_PATTERN.match(args.name) or args.name in DATASETS):
        raise CLIError(
            f"--name {args.name!r}: use lower-case letters, digits, '.', '_' and '-' (not "
            f"{', '.join(DATASETS)})"
        )
    target = args.out or user_cache_dir() / (args.name or "mnist")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".numlp-import-", dir=target.parent))
    try:
        if kind == "keras":
            paths = import_keras_npz(args.file, staging)
        else:
            paths = import_openml_csv(args.file, staging, args.train_size)
        official = {r: f.content_sha256 for r, f in DATASETS["mnist"].files.items()}
        hashes = content_hashes(paths)
        is_official = hashes == official
        if args.out is None and is_official:  # the MNIST itself goes where MNIST is looked for
            target = user_cache_dir() / "mnist"
        if not _check_import_target(args, target, is_official):
            print(f"{target} already holds the verified MNIST files; nothing was changed")
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for path in paths.values():
            for old in (target / path.name, target / path.name.removesuffix(".gz")):
                old.unlink(missing_ok=True)  # a stale uncompressed twin would be found first
            os.replace(path, target / path.name)
            print(f"wrote {target / path.name}")
        if not is_official:  # last: a folder without it is no dataset, never a half one
            name = args.name or target.name
            files = {paths[role].name.removesuffix(".gz"): sha for role, sha in hashes.items()}
            title = f"imported from {args.file.name}"
            write_manifest(target, name, [str(c) for c in range(CLASSES)], files, title)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if is_official:
        print("the content is identical to the official MNIST files")
    else:
        where = "" if args.out is None else f" --data-dir {target}"
        print(
            f"the content differs from the official MNIST files, so it is a dataset of its own, "
            f"{name!r}: numlp train --dataset {name}{where}"
        )
    return 0


def _check_import_target(args, target: Path, is_official: bool) -> bool:
    """Whether to move the imported files into ``target``; refuses (CLIError) where they
    would replace data the user has."""
    from numlp.data.datasets import DATASETS, DataError, find_file, load_dataset

    held = [f.name for f in DATASETS["mnist"].files.values() if find_file(target, f)]
    if args.out is None and is_official:
        if held:
            try:
                load_dataset("mnist", data_dir=target, download=False)
            except DataError:
                return True  # what is there is damaged: the verified import repairs it
            return False  # the same verified content is already there
    elif args.out is None and args.name is None:
        raise CLIError(
            f"{args.file} is not the official MNIST content, so it does not go into the "
            f"MNIST cache ({target}); give it a name of its own with --name NAME (or a "
            "folder with --out DIR)"
        )
    elif held and not args.force:
        raise CLIError(
            f"{target} already holds IDX files ({', '.join(held)}); choose another "
            f"{'--out' if args.out else '--name'}, or pass --force to replace them"
        )
    return True
