"""``numlp data``: list, fetch, verify, show and import datasets."""

from __future__ import annotations

import os
from pathlib import Path

from numlp.checks import printable
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
        help="your own data (a folder of pictures per class, a CSV table with a label column), "
        "or Keras mnist.npz / OpenML mnist_784.csv, as a dataset numlp trains on",
    )
    imp.add_argument("file", type=Path, help="a file, or a folder with a folder per class")
    imp.add_argument(
        "--format", choices=["auto", "keras", "openml", "pictures", "table"], default="auto"
    )
    imp.add_argument("--label", help="a table's label column (CSV with a header row)")
    imp.add_argument(
        "--size", type=_size, default=(28, 28), metavar="HxW", help="pictures' size (28x28)"
    )
    imp.add_argument("--colour", action="store_true", help="keep pictures' colour (RGB)")
    imp.add_argument(
        "--test-split",
        type=float,
        default=0.2,
        help="fraction of each class held out as the test set, when the folder has no train/ "
        "and test/ (0.2; seeded: the same every time)",
    )
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
        print(printable(f"{name:<14} {info.title}; {where}"))
    for folder, info in _imported(args.data_dir):  # an imported title is a file's: escaped
        print(printable(f"{info.name:<14} {info.title} (imported); in {folder}"))
    return 0


def _imported(data_dir):
    """The datasets imported with their own names where numlp looks: their folders and
    descriptions (a damaged manifest is passed over here; loading it says so)."""
    from numlp.data.catalog import MANIFEST, DataError, read_manifest
    from numlp.data.datasets import user_cache_dir

    bases = [data_dir, os.environ.get("NUMLP_DATA"), user_cache_dir()]
    seen = set()
    for base in (Path(b) for b in bases if b):
        for manifest in sorted(base.glob(f"*/{MANIFEST}")) if base.is_dir() else []:
            try:
                info = read_manifest(manifest.parent)
            except DataError:
                continue
            if info is not None and info.name not in seen:
                seen.add(info.name)
                yield manifest.parent, info


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


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise ValueError(f"--size {text!r}: give HEIGHTxWIDTH, e.g. 28x28")
    return int(height), int(width)


def cmd_data_import(args) -> int:
    """Convert into a staging folder first; check where the files may go and under which name
    before a byte reaches it, so that nothing verified is ever replaced by other content and
    a failure leaves nothing behind."""
    import shutil

    from numlp.data.catalog import write_manifest
    from numlp.data.convert import CLASSES, content_hashes, import_keras_npz, import_openml_csv
    from numlp.data.datasets import DATASETS, user_cache_dir

    kind = _import_format(args)
    if kind in ("pictures", "table"):
        return _import_own(args, kind)
    if args.name is not None:
        _check_dataset_name(args.name, "--name")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file, not a folder")
    target = args.out or user_cache_dir() / (args.name or "mnist")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_folder(target.parent)
    try:
        if kind == "keras":
            paths = import_keras_npz(args.file, staging)
        else:
            paths = import_openml_csv(args.file, staging, args.train_size)
        official = {r: f.content_sha256 for r, f in DATASETS["mnist"].files.items()}
        hashes = content_hashes(paths)
        is_official = hashes == official
        named = args.name is not None or not is_official  # a dataset of its own: a manifest
        name = args.name or target.name
        if named and args.name is None and args.out is not None:  # named after its folder
            _check_dataset_name(name, "--out (the folder's name names the dataset)")
        if args.out is None and args.name is None and is_official:  # MNIST goes where MNIST is
            target = user_cache_dir() / "mnist"
        if not _check_import_target(args, target, is_official):
            print(f"{target} already holds the verified MNIST files; nothing was changed")
            return 0
        _move_into(target, paths)
        if named:  # last: a folder without it is no dataset, never a half one
            title = f"imported from {args.file.name}"
            classes = [str(c) for c in range(CLASSES)]
            write_manifest(target, name, classes, _by_file(paths, hashes), title)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _say_imported(args, target, name, is_official, named)
    return 0


def _import_format(args) -> str:
    if args.format != "auto":
        return args.format
    if args.file.is_dir():
        return "pictures"
    if args.label is not None:
        return "table"
    kind = {".npz": "keras", ".csv": "openml"}.get(args.file.suffix.lower())
    if kind is None:
        raise CLIError(f"{args.file}: cannot tell the format from the name; pass --format")
    return kind


def _import_own(args, kind: str) -> int:
    """Pictures or a table as a dataset of its own: every argument checked, converted into a
    staging folder, then moved into place with its manifest (its inputs recorded)."""
    import shutil

    from numlp.data.catalog import write_manifest
    from numlp.data.convert import content_hashes
    from numlp.data.datasets import user_cache_dir
    from numlp.data.own import import_picture_folders, import_table

    if args.name is None and args.out is None:
        raise CLIError(f"{args.file}: give the dataset a name with --name NAME (or --out DIR)")
    name = args.name or args.out.name
    _check_dataset_name(name, "--name" if args.name else "--out (the folder's name names it)")
    if kind == "table" and not args.label:
        raise CLIError(f"{args.file}: name the table's label column with --label COLUMN")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file, not a folder")
    target = args.out or user_cache_dir() / name
    _refuse_held(args, target, sorted(p.name for p in target.glob("*-ubyte*")))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_folder(target.parent)
    try:
        if kind == "pictures":
            size, colour, split = args.size, args.colour, args.test_split
            paths, names, inputs = import_picture_folders(args.file, staging, size, colour, split)
        else:
            paths, names, inputs = import_table(args.file, staging, args.label, args.test_split)
        hashes = content_hashes(paths)
        _move_into(target, paths)
        title = f"imported from {args.file.name}"
        write_manifest(target, name, names, _by_file(paths, hashes), title, inputs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    where = "" if args.out is None else f" --data-dir {target}"
    what = "pictures" if kind == "pictures" else f"rows of {len(inputs['columns'])} columns"
    print(printable(f"{name}: {len(names)} classes of {what}: numlp train --dataset {name}{where}"))
    return 0


def _check_dataset_name(name: str, given_as: str) -> None:
    from numlp.data.catalog import NAME_PATTERN
    from numlp.data.datasets import DATASETS

    if not NAME_PATTERN.match(name) or name in DATASETS:
        raise CLIError(
            f"{given_as} {name!r}: a dataset's name is lower-case letters, digits, '.', '_' "
            f"and '-' (not {', '.join(DATASETS)}); give one with --name NAME"
        )


STAGING = ".numlp-import-"


def _staging_folder(parent: Path) -> Path:
    """A new staging folder in ``parent`` named after this process; those of import
    processes that are gone (killed mid-import) are removed first."""
    import shutil
    import tempfile

    for stale in parent.glob(f"{STAGING}*"):
        pid = stale.name.removeprefix(STAGING).split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _say_imported(args, target: Path, name: str, is_official: bool, named: bool) -> None:
    if is_official and not named:
        print("the content is identical to the official MNIST files")
        return
    where = "" if args.out is None else f" --data-dir {target}"
    what = (
        "the official MNIST content, under a name of its own"
        if is_official
        else "content that differs from the official MNIST files, so it is a dataset of its own"
    )
    print(f"{what}, {name!r}: numlp train --dataset {name}{where}")


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
    _refuse_held(args, target, held)
    return True


def _refuse_held(args, target: Path, held: list[str]) -> None:
    """An import replaces IDX files already in ``target`` only with --force."""
    if held and not args.force:
        raise CLIError(
            f"{target} already holds IDX files ({', '.join(held)}); choose another "
            f"{'--out' if args.out else '--name'}, or pass --force to replace them"
        )


def _move_into(target: Path, paths: dict[str, Path]) -> None:
    """The staged IDX files into ``target``, each by one rename."""
    target.mkdir(parents=True, exist_ok=True)
    for path in paths.values():
        for old in (target / path.name, target / path.name.removesuffix(".gz")):
            old.unlink(missing_ok=True)  # a stale uncompressed twin would be found first
        os.replace(path, target / path.name)
        print(f"wrote {target / path.name}")


def _by_file(paths: dict[str, Path], hashes: dict[str, str]) -> dict[str, str]:
    """Content hashes by file name (without .gz), as a manifest records them."""
    return {paths[role].name.removesuffix(".gz"): sha for role, sha in hashes.items()}
