"""What a sweep found: the top trials as a table, the winner as a config file for
``numlp train --config``, Optuna's plots, and one HTML page with all of it.

The winner's file trains on the whole training set (``val_split = 0``): the recipe was chosen on
the validation split, and the test set is for the user to score once, with the retrained model.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from pathlib import Path

from numlp.atomic import atomic_write_text
from numlp.config import SETTINGS, TrainConfig, to_toml
from numlp.report import require_matplotlib, save_figure
from numlp.sweep.space import short_value
from numlp.sweep.storage import SETTINGS_ATTR, StorageError
from numlp.sweep.trial import outcome

PLOTS = {
    "history": ("optimization history", "plot_optimization_history"),
    "importances": ("parameter importances", "plot_param_importances"),
    "parallel": ("parallel coordinates", "plot_parallel_coordinate"),
}


def finished(study) -> list:
    """Completed trials, best first."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return sorted(done, key=lambda t: (-t.value, t.number))


def table(study, top: int = 10) -> list[str]:
    """The ``top`` completed trials, and a tally of all, as lines of text."""
    trials = study.get_trials(deepcopy=False)
    states = [outcome(t) for t in trials if outcome(t) != "surplus"]
    kinds = ("complete", "pruned", "failed", "lost", "running")
    tally = ", ".join(f"{states.count(s)} {s}" for s in kinds if s in states)
    lines = [f"study {study.study_name!r}: {len(states)} trials ({tally})"]
    best = finished(study)[:top]
    if not best:
        return [*lines, "no trial has completed yet"]
    names = list(best[0].params)
    rows = [["trial", "val acc", "epochs", "seconds", *names]]
    for t in best:
        seconds = t.user_attrs.get("seconds")
        rows.append(
            [
                str(t.number),
                f"{t.value:.2%}",
                str(t.user_attrs.get("epochs", "–")),
                f"{seconds:.1f}" if seconds is not None else "–",
                *(short_value(t.params.get(n)) for n in names),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    return lines


def best_config(study) -> TrainConfig:
    """The winning trial's full configuration, to retrain on the whole training set."""
    best = finished(study)
    if not best:
        raise StorageError(f"study {study.study_name!r} has no completed trial yet")
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:
        raise StorageError(f"study {study.study_name!r} was not made by numlp sweep")
    fixed = json.loads(saved)["config"]
    values = {**fixed, **best[0].params, "val_split": 0.0}
    return TrainConfig().updated(**{k: _setting(k, v) for k, v in values.items() if k in SETTINGS})


def _setting(key: str, value):
    if isinstance(SETTINGS[key].default, tuple):
        if isinstance(value, str):
            return tuple(int(v) for v in value.split(",") if v)
        return tuple(value)
    return value


def best_toml(study) -> str:
    best = finished(study)[0]
    params = ", ".join(f"{k} = {short_value(v)}" for k, v in best.params.items())
    head = (
        f"# numlp sweep winner: trial {best.number} of study {study.study_name!r}, validation "
        f"accuracy {best.value:.2%}\n# searched: {params}\n# val_split = 0: retrain on the whole "
        "training set, then score the test set once: numlp train --config THIS_FILE\n"
    )
    return head + to_toml(best_config(study)).split("\n", 1)[1]


def plot_sweep(study, folder: Path) -> dict[str, Path]:
    """Optuna's matplotlib plots of ``study`` as PNG files in ``folder``; a plot Optuna cannot
    draw yet (importances need two completed trials) is left out."""
    plt = require_matplotlib()
    from optuna.visualization import matplotlib as plots

    paths = {}
    for name, (_, function) in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks these plots experimental
            try:
                axes = getattr(plots, function)(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                plt.close("all")
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.set_size_inches(9, 5)
        figure.tight_layout()
        paths[name] = save_figure(figure, folder / f"sweep-{name}.png")
    return paths


def show(study, folder, top: int = 10, plots: bool = True) -> dict:
    """Write ``best.toml``, the plots and ``sweep.html`` into ``folder``; return the table
    lines and the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = table(study, top)
    written = {}
    if finished(study):
        written["best"] = folder / "best.toml"
        atomic_write_text(written["best"], best_toml(study))
    pictures = plot_sweep(study, folder) if plots and finished(study) else {}
    written.update(pictures)
    written["page"] = html_page(study, lines, pictures, folder / "sweep.html")
    return {"lines": lines, "written": written}


def html_page(study, lines: list[str], pictures: dict[str, Path], path: Path) -> Path:
    """One self-contained page: the table, the winner's config and the plots (embedded)."""
    best = html.escape(best_toml(study)) if finished(study) else "no trial has completed yet"
    figures = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode("ascii")}">'
        f"<figcaption>{html.escape(PLOTS[name][0])}</figcaption></figure>"
        for name, p in pictures.items()
    )
    name = html.escape(study.study_name)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>numlp sweep {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
pre {{ background: #f8f8f8; padding: 1em; overflow-x: auto; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head>
<body data-images="{len(pictures)}">
<h1>numlp sweep <code>{name}</code></h1>
<h2>Top trials (validation accuracy)</h2><pre>{html.escape(chr(10).join(lines))}</pre>
<h2>Winner</h2><pre>{best}</pre>
<h2>Plots</h2>{figures or "<p>No plots yet.</p>"}
</body></html>
"""
    atomic_write_text(path, page)
    return path
