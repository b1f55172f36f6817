"""What every command module of the CLI shares: the one-line error and download progress."""

from __future__ import annotations

import argparse
import sys

EXIT_INTERRUPTED = 130  # what a shell reports for Ctrl-C: 128 + SIGINT


class CLIError(Exception):
    """An error to report in one line (exit status 2)."""


def base_config(preset: str | None, config):
    """The configuration ``--preset NAME`` or ``--config FILE`` names (one of them at most),
    else the defaults of ``numlp train``."""
    from numlp.config import TrainConfig, load_config, preset_path

    if preset and config:
        raise CLIError("give --preset or --config, not both (a preset is a config file)")
    source = preset_path(preset) if preset else config
    return load_config(source) if source else TrainConfig()


def int_list(text: str) -> tuple[int, ...]:
    """Widths such as ``512,256``; ``0`` or nothing is no hidden layer at all."""
    if text.strip() in ("", "0"):
        return ()
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths such as 512,256, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive widths such as 512,256, got {text!r}")
    return values


def download_progress():
    """A per-file progress callback: tqdm if installed and on a terminal, else quiet."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return plain_progress()
    bars = {}

    def update(name, done, total):
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, desc=name, unit="B", unit_scale=True, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def plain_progress():
    def update(name, done, total):
        end = "\n" if done >= total else "\r"
        print(f"  {name}: {done / total:6.1%} of {total / 1e6:.1f} MB", end=end, file=sys.stderr)

    return update
