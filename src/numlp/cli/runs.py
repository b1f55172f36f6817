"""Commands on run folders: ``plot``, ``report``, ``compare``; and ``bench``."""

from __future__ import annotations

import sys
from pathlib import Path

from numlp.checks import printable


def add_commands(commands) -> None:
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

    runs, rows = {}, []
    for run in args.runs:  # every run read before anything is printed: an error, not half a table
        records = read_metrics(run)
        runs[run.name if run.name not in runs else str(run)] = records
        model_file = run / "model.npz"
        training = read_header(model_file).get("training", {}) if model_file.exists() else {}
        val = records[-1].get("val_accuracy") if records else None
        test = training.get("test_accuracy")
        seconds = sum(r.get("seconds", 0) for r in records)
        rows.append(
            f"{str(run):<30} {len(records):>6} {_pct(val):>8} {_pct(test):>8} {seconds:>8.1f}"
        )
    print(f"{'run':<30} {'epochs':>6} {'val acc':>8} {'test acc':>8} {'seconds':>8}")
    for row in rows:
        print(printable(row))
    try:
        print(f"wrote {plot_comparison(runs, args.out)}")
    except PlotsUnavailable as err:
        print(f"no plot: {err}", file=sys.stderr)
    return 0


def _pct(value) -> str:
    return f"{value:.2%}" if isinstance(value, float) else "–"


def cmd_bench(args) -> int:
    from numlp.bench import main as bench_main

    return bench_main(args.bench_args)
