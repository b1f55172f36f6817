"""The benchmarks' arithmetic and reports, and that each runs (timings are never asserted)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import numlp.bench
from numlp.bench import w1_flops
from numlp.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from peers import LibraryProcess, markdown  # noqa: E402
from shifted_views import moved  # noqa: E402

pytestmark = pytest.mark.slow  # servers, Chromium, PostgreSQL, benchmarks or long training


def test_w1_flops_count_forward_and_backward_without_the_input_gradient():
    per_sample = 2 * 784 * 512 * 2 + 2 * 512 * 256 * 3 + 2 * 256 * 10 * 3
    assert w1_flops(1) == per_sample
    assert round(w1_flops(60000) / 1e9) == 144  # the figure


def test_moved_images_shift_by_whole_pixels_and_fill_the_freed_edge_with_background():
    images = np.arange(1, 13, dtype=np.uint8).reshape(1, 3, 4)
    down_right = moved(images, 1, 1)
    assert (down_right[0, 1:, 1:] == images[0, :2, :3]).all()
    assert (down_right[0, 0] == 0).all() and (down_right[0, :, 0] == 0).all()
    up_left = moved(images, -1, -1)
    assert (up_left[0, :2, :3] == images[0, 1:, 1:]).all()
    assert (up_left[0, 2] == 0).all() and (up_left[0, :, 3] == 0).all()
    assert (moved(images, 0, 0) == images).all() and moved(images, 0, 0) is not images


def test_markdown_reports_each_workload_and_the_ratio_to_torch():
    result = {
        "machine": {"cpus": 2, "numpy": "2.x"},
        "missing_peers": ["sklearn"],
        "ceiling_gflops": [200.0, 190.0],
        "w1": {"numlp": {"median": 1.0, "gflops": 144.0}, "torch": {"median": 2.0, "gflops": 72}},
        "w3": {
            "numlp": {"batch_1": 10.0, "batch_10000": 1e5},
            "torch": {"batch_1": 5.0, "batch_10000": 2e5},
        },
    }
    text = markdown(result)
    assert "Not installed, so not measured: sklearn" in text
    assert "| W1 time / torch's | 0.50 | 1.00 |" in text
    assert "144 (74%)" in text
    assert "100,000" in text


def test_a_library_runs_its_workloads_in_a_process_of_its_own(mnist_path):
    library = LibraryProcess("numlp", mnist_path)
    try:
        assert library.samples == 60000
        assert library._process.pid != os.getpid()
        assert library.call("w1") > 0  # one real W1 epoch
        reached = library.call("w2", 0.5, 1)  # any trained model passes 50 % after an epoch
        assert reached["reached"] and reached["epochs"] == 1
        assert reached["curve"][0]["test_accuracy"] >= 0.5
        with pytest.raises(RuntimeError, match="numlp failed in its benchmark process"):
            library.call("w2", 0.5)  # a missing argument: the worker's traceback comes back
        assert library.call("w3")["batch_1"] > 0  # and the worker carries on
    finally:
        library.close()
    assert not library._process.is_alive()


def test_numlp_bench_runs_and_reports_against_the_ceiling(mnist_path, monkeypatch, capsys):
    small = numlp.bench.matmul_ceiling
    monkeypatch.setattr(numlp.bench, "matmul_ceiling", lambda: small(n=256, repeats=2))
    assert main(["bench", "--rounds", "1", "--data-dir", str(mnist_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine: ") and "GFLOP/s" in lines[0]
    assert lines[1].startswith("W1 epoch (784-512-256-10, batch 128, SGD momentum): median ")
    assert "% of the ceiling" in lines[2] and lines[3].startswith("peak RSS ")
