"""Plots and the HTML report from a short real run; the report opened in headless Chromium."""

import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import train_argv

from numlp.cli import main

pytest.importorskip("matplotlib")

from numlp.report import PLOT_FILES, html_report, make_run_plots  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_path):
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(train_argv(mnist_path, out, 32, 2, "--quiet")) == 0
    return out


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def assert_not_blank(path):
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.01, f"{path} is blank"


@pytest.mark.slow
def test_training_draws_every_plot_as_a_real_png(run):
    expected_sizes = {"curves": (1000, 400), "per_class": (600, 400)}
    for name, file in PLOT_FILES.items():
        path = run / file
        width, height = png_size(path)
        assert width >= 300 and height >= 300
        if name in expected_sizes:
            assert (width, height) == expected_sizes[name]
        assert_not_blank(path)


@pytest.mark.slow
def test_plot_command_redraws_and_report_embeds_everything(run, mnist_path, tmp_path):
    for file in PLOT_FILES.values():
        (run / file).unlink()
    paths = make_run_plots(run, mnist_path)
    assert set(paths) == set(PLOT_FILES)
    report = html_report(run, tmp_path / "report.html")
    page = report.read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(PLOT_FILES)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r'(href|src)="(?!data:)', page)  # no external file or URL at all
    assert "test accuracy" in page and "hidden = [32]" in page


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    return path


@pytest.mark.slow
def test_report_opens_in_headless_chromium_with_every_image_loaded(run, tmp_path):
    browser = chromium()
    report = html_report(run, tmp_path / "report.html")
    url = report.resolve().as_uri()
    dom = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    images = re.search(r'data-images="(\d+)"', dom)
    loaded = re.search(r'data-loaded="(\d+)"', dom)
    assert images and loaded, "the page did not run its load check"
    assert int(loaded.group(1)) == int(images.group(1)) == len(PLOT_FILES)

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--window-size=1100,1800",
            f"--screenshot={shot}",
            url,
        ],
        capture_output=True,
        timeout=120,
    )
    assert png_size(shot) == (1100, 1800)
    assert_not_blank(shot)


@pytest.mark.slow
def test_non_tty_output_has_exactly_one_line_per_epoch(mnist_path, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "numlp.cli",
            *train_argv(mnist_path, tmp_path / "r", 16, 3, "--no-plots"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/3", "2/3", "3/3"]
    assert len(lines) == 3 + 2  # the start line, three epochs, the final line
    assert "\r" not in done.stdout + done.stderr  # no progress-bar redraws in logs


@pytest.mark.slow
def test_without_matplotlib_training_works_and_says_how_to_get_plots(mnist_path, tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from numlp.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *train_argv(mnist_path, tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install matplotlib (numlp's plots extra" in done.stderr  # runnable from a checkout
    assert (tmp_path / "r" / "model.npz").exists()


def test_compare_tabulates_runs_and_overlays_their_curves(run, tmp_path, mnist_path, capsys):
    other = tmp_path / "other"
    assert main(train_argv(mnist_path, other, 16, 1, "--quiet", "--no-plots")) == 0
    capsys.readouterr()
    out = tmp_path / "compare.png"
    assert main(["compare", str(run), str(other), "--out", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["run", "epochs"] and len(table) == 4
    assert_not_blank(out)


def test_compare_prints_nothing_but_the_error_when_a_folder_is_not_a_run(run, tmp_path, capsys):
    capsys.readouterr()
    stray = tmp_path / "not-a-run"
    stray.mkdir()
    assert main(["compare", str(run), str(stray), "--out", str(tmp_path / "c.png")]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""  # no table header or first row before the error
    assert "not-a-run has no metrics.jsonl" in captured.err
    assert not (tmp_path / "c.png").exists()


def test_data_show_draws_a_labelled_grid(mnist_path, tmp_path, capsys):
    out = tmp_path / "samples.png"
    assert (
        main(
            [
                "data",
                "show",
                "mnist",
                "--data-dir",
                str(mnist_path),
                "--count",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert_not_blank(out)
    assert png_size(out)[0] >= 400


def test_progress_bar_counts_images_and_shows_the_running_loss():
    import io

    pytest.importorskip("tqdm")
    from numlp import Dense, Sequential
    from numlp.progress import ProgressBar

    stream = io.StringIO()
    x = np.random.default_rng(0).random((256, 4)).astype(np.float32)
    y = np.arange(256) % 2
    Sequential([Dense(4, 2)], seed=0).fit(
        x,
        y,
        epochs=1,
        batch_size=8,
        callbacks=[ProgressBar(stream, refresh_steps=1, mininterval=0)],
    )
    text = stream.getvalue()
    assert "epoch 1/1" in text and "img" in text and "loss=" in text and "256/256" in text
