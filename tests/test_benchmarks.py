"""Each benchmark script runs end to end at a tiny size (their timings are never asserted:
they belong in notes and benchmarks/results, not in tests)."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from numlp import Dense, Flatten, ReLU, Sequential
from numlp.io import read_header, save_model

pytestmark = pytest.mark.slow  # servers, Chromium, PostgreSQL, benchmarks or long training

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args, timeout=300) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout[done.stdout.index("{") :])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = Sequential([Flatten(), Dense(784, 32), ReLU(), Dense(32, 10)], (28, 28), seed=0)
    path = tmp_path_factory.mktemp("bench") / "model.npz"
    return save_model(path, model, class_names=list("0123456789"), preprocessing={"scale": 1 / 255})


def test_race_benchmark_runs_each_library_in_a_process_quiet_and_busy(mnist_path):
    pytest.importorskip("threadpoolctl")
    result = run("race.py", "--data-dir", mnist_path, "--rounds", "1", "--epochs", "1",
                 "--busy", "1", "--libraries", "numlp", "numlp-fixed", "numpy")  # fmt: skip
    (measured,) = result["rounds"]
    for library in ("numlp", "numlp-fixed", "numpy"):
        for condition in ("quiet", "busy"):
            assert len(measured[library][condition]["seconds"]) == 1
        assert "busy_over_quiet" in result["summary"][library]
    assert measured["numlp-fixed"]["busy"]["threads"] == os.cpu_count()


@pytest.mark.parametrize("library", ["products", "jax"])
def test_race_measures_the_products_floor_and_jax(mnist_path, library):
    if library == "jax":
        pytest.importorskip("jax")
    result = run("race.py", "--data-dir", mnist_path, "--rounds", "1", "--epochs", "1",
                 "--libraries", library)  # fmt: skip
    (measured,) = result["rounds"]
    (seconds,) = measured[library]["quiet"]["seconds"]
    assert seconds > 0 and result["summary"][library]["quiet"]["median"] == seconds


def test_update_cost_times_the_step_after_each_kind_of_work(mnist_path):
    pytest.importorskip("threadpoolctl")
    result = run("update_cost.py", "--data-dir", mnist_path, "--repeats", "5", "--samples",
                 "1280")  # fmt: skip
    for kernels_used in result["ms_per_step"].values():
        assert set(kernels_used) == {"nothing", "matmul, 2 threads", "matmul, 1 thread",
                                     "32 MB sweep", "training"}  # fmt: skip
        assert all(ms > 0 for ms in kernels_used.values())


def test_same_seed_benchmark_hashes_every_run_quiet_and_with_neighbours(mnist_path):
    pytest.importorskip("threadpoolctl")
    result = run("same_seed.py", "--data-dir", mnist_path, "--runs", "2", "--epochs", "1",
                 "--busy-after", "0.5")  # fmt: skip
    quiet, busy = result["runs"]
    assert quiet["busy_after"] is None and busy["busy_after"] == 0.5
    assert len(quiet["model"]) == 16 and len(quiet["threads"]) == 1
    assert result["different_models"] in (1, 2)


def test_serve_load_benchmark_runs_both_servers(model_file):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("starlette")
    result = run("serve_load.py", "--model", model_file, "--seconds", "0.1", "--no-busy")
    for server in ("numlp", "onnx"):
        loads = result["quiet"][server]
        assert "json 32 clients as fast as answered" in loads and "png 8 clients 200/s" in loads
        assert all(load["errors"] == 0 and load["requests"] > 0 for load in loads.values())
    assert result["quiet"]["numlp_over_onnx_throughput"]["png 32 clients as fast as answered"]


def test_serve_load_benchmark_takes_turns_for_rounds_of_one_workload(model_file):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("starlette")
    result = run(
        "serve_load.py", "--model", model_file, "--seconds", "0.1", "--no-busy",
        "--loads", "png", "--rounds", "2",
    )  # fmt: skip
    loads = result["quiet"]["numlp"]
    assert all(load.startswith("png") for load in loads)
    assert all(len(load["rounds"]["per_second"]) == 2 for load in loads.values())
    ratio = result["quiet"]["numlp_over_onnx_throughput"]["png 32 clients as fast as answered"]
    assert len(ratio["rounds"]) == 2 and ratio["median"] > 0


def test_serve_pictures_benchmark_runs():
    pytest.importorskip("starlette")
    result = run("serve_pictures.py", "--clients", "12", "--pictures", "3", "--side", "600")
    assert sum(result["statuses"].values()) == 12 and result["tracebacks_in_log"] == 0


def test_seeds_benchmark_runs_a_seed_config(mnist_path, tmp_path):
    result = run("seeds.py", "--epochs", 1, "--only", "002", "--out", tmp_path,
                 "--data-dir", mnist_path)  # fmt: skip
    (row,) = result["results"]
    assert row["seed"] == "002" and row["epochs"] == 1 and 0.5 < row["test_accuracy"] <= 1
    assert "| 002 |" in result["table"]


def test_sweep_benchmark_runs_a_tiny_sweep(mnist_path, tmp_path):
    pytest.importorskip("optuna")
    space = tmp_path / "space.toml"
    space.write_text("hidden = [16]\nlr = {log = [1e-3, 3e-3]}\n")
    result = run("sweep_fast.py", "--minutes", 0.05, "--epochs", 1, "--seeds", 1,
                 "--out", tmp_path / "b", "--data-dir", mnist_path, "--space", space,
                 timeout=600)  # fmt: skip
    assert result["sweep"]["trials"] >= 1 and result["fast_preset"]["val_accuracy"] > 0.5


def test_time_to_99_benchmark_runs_one_numlp_epoch(mnist_path):
    result = run("time_to_99.py", "--library", "numlp", "--epochs", 1, "--data-dir", mnist_path)
    ((seconds, accuracy),) = result["marks"]
    assert seconds > 0 and 0.9 < accuracy < 1 and result["seconds_to_99"] is None
    assert set(result["parts"]) == {"forward_backward", "optimizer", "distortions"}


def test_committees_benchmark_trains_members_joins_them_and_distils(small_data, tmp_path):
    result = run("committees.py", "--preset", "fast", "--epochs", 1, "--hidden", "16",
                 "--committees", 2, "--members", 2, "--students", 7, "--jobs", 2,
                 "--data-dir", small_data.parent, "--out", tmp_path)  # fmt: skip
    assert [m["seed"] for m in result["members"]] == [0, 1, 2, 3]
    assert [c["seeds"] for c in result["committees"]] == [[0, 1], [2, 3]]
    assert 0.3 < result["committee_test_accuracy"]["mean"] <= 1
    assert result["students"][0]["seed"] == 7 and result["members_wall_seconds"] > 0
    again = run("committees.py", "--preset", "fast", "--epochs", 1, "--hidden", "16",
                "--committees", 2, "--members", 2, "--data-dir", small_data.parent,
                "--out", tmp_path, "--reuse")  # fmt: skip
    assert again["committees"] == result["committees"] and again["members_wall_seconds"] is None


def test_committees_benchmark_joins_members_of_different_recipes_on_one_split(small_data, tmp_path):
    result = run("committees.py", "--preset", "fast", "--epochs", 1, "--committees", 2,
                 "--recipe", "--hidden 16", "--recipe", "--hidden 8,8 --dropout 0",
                 "--distil-each", "--student-preset", "best",
                 "--student-recipe", "--label-smoothing 0",
                 "--data-dir", small_data.parent, "--out", tmp_path)  # fmt: skip
    members = result["members"]
    assert [(m["committee"], m["seed"], m["recipe"]) for m in members] == [
        (0, 0, "--hidden 16"), (0, 0, "--hidden 8,8 --dropout 0"),
        (1, 1, "--hidden 16"), (1, 1, "--hidden 8,8 --dropout 0"),
    ]  # fmt: skip
    first, second = result["committees"]
    assert first["seeds"] == [0, 0] and second["seeds"] == [1, 1]
    assert first["members_val_accuracy"] == [m["val_accuracy"] for m in members[:2]]
    assert 0.3 < first["val_accuracy"] <= 1 and 0.3 < second["test_accuracy"] <= 1
    widths = [read_header(tmp_path / f"member-s0-r{r}" / "model.npz")["model"] for r in (0, 1)]
    assert widths[0] != widths[1]
    # one student per committee, with its seed (so its split) and its committee as teacher
    assert [(s["committee"], s["seed"]) for s in result["students"]] == [(0, 0), (1, 1)]
    for c in (0, 1):
        config = read_header(tmp_path / f"student-c{c}" / "model.npz")["training"]["config"]
        assert config["teacher"] == str((tmp_path / f"committee-{c}" / "model.npz").resolve())
        assert config["elastic_alpha"] == 12.0  # the student preset, not the members'
        assert config["label_smoothing"] == 0.0  # and the student recipe on top
    assert result["distillation"]["preset"] == "best"
    assert result["distillation"]["recipe"] == "--label-smoothing 0"
    assert "--hidden 8,8 --dropout 0" in shlex.split(result["command"])  # one argument again


def test_shifted_views_benchmark_scores_a_committee_and_a_run_on_their_split(small_data, tmp_path):
    run("committees.py", "--preset", "fast", "--epochs", 1, "--committees", 1,
        "--recipe", "--hidden 16", "--recipe", "--hidden 8", "--jobs", 2,
        "--data-dir", small_data.parent, "--out", tmp_path)  # fmt: skip
    members = [tmp_path / f"member-s0-r{r}" for r in (0, 1)]
    result = run("shifted_views.py", "--group", *members, "--group", members[0],
                 "--data-dir", small_data.parent)  # fmt: skip
    committee, single = result["groups"]
    assert committee["runs"] == [str(m) for m in members] and single["seed"] == 0
    # one view is the plain model: on the split it was trained without, as training scored it
    recorded = read_header(members[0] / "model.npz")["training"]["val_accuracy"]
    assert single["val_accuracy"]["1"] == pytest.approx(recorded)
    for group in result["groups"]:
        for split in ("val_accuracy", "test_accuracy"):
            assert list(group[split]) == ["1", "5", "9"]
            assert all(0.3 < accuracy <= 1 for accuracy in group[split].values())
    five = [group["test_accuracy"]["5"] for group in (committee, single)]
    over_groups = result["over_groups"]["test_accuracy"]["5"]
    assert over_groups["mean"] == pytest.approx(sum(five) / 2)
    assert over_groups["std"] == pytest.approx(abs(five[0] - five[1]) / 2**0.5)


def test_shifted_views_benchmark_refuses_a_group_without_a_shared_split(small_data, tmp_path):
    run("committees.py", "--preset", "fast", "--epochs", 1, "--hidden", "8", "--committees", 1,
        "--members", 2, "--data-dir", small_data.parent, "--out", tmp_path)  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "shifted_views.py"), "--data-dir", str(small_data.parent),
         "--group", str(tmp_path / "member-s0"), str(tmp_path / "member-s1")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and "share no validation split" in done.stderr


def test_subnormals_benchmark_times_adam_steps_both_ways_for_each_fraction():
    result = run("subnormals.py", "--shape", 64, 32, "--fractions", 0, 0.5, "--steps", 3,
                 "--rounds", 2)  # fmt: skip
    assert result["shape"] == [64, 32] and result["cpu"]
    assert list(result["ms_per_adam_step"]) == ["0.0", "0.5"]
    for ways in result["ms_per_adam_step"].values():
        assert list(ways) == ["flushed", "not flushed"]
        assert all(0 < w["min"] <= w["median"] <= w["max"] for w in ways.values())


def test_small_batches_benchmark_times_both_ways_quiet_and_busy():
    pytest.importorskip("threadpoolctl")
    result = run("small_batches.py", "--rows", "1", "65", "--calls", "3")
    for condition in ("quiet", "busy"):
        for rows in ("1", "65"):
            ways = result[condition][rows]
            assert set(ways) == {"numlp", "every core"}
            assert all(way["median_us"] > 0 for way in ways.values())


def test_presets_benchmark_runs_two_seeds_at_a_time_and_keeps_their_folders(mnist_path, tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "presets.py"), "--presets", "fast", "--seeds", "3", "4",
         "--jobs", "2", "--data-dir", str(mnist_path), "--json", str(tmp_path / "runs.json"),
         "--keep", str(tmp_path), "--", "--epochs", "1", "--hidden", "16", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "runs.json").read_text())
    assert [row["seed"] for row in rows] == [3, 4] and rows[0]["epochs"] == 1
    assert all(0.5 < row["test_accuracy"] <= 1 for row in rows)
    assert (tmp_path / "fast-s3" / "model.npz").is_file() and (tmp_path / "fast-s4").is_dir()
    assert "| fast | mnist |" in done.stdout


def test_step_profile_runs_and_times_every_part(mnist_path, tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "step_profile.py"), "--data-dir", str(mnist_path),
         "--steps", "40", "--warmup", "10", "--json", str(tmp_path / "p.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    by_kernels = json.loads((tmp_path / "p.json").read_text())["ms_per_step"]
    assert set(by_kernels) == {"numpy", "numba"}  # side by side (numba is a dev dependency)
    for parts in by_kernels.values():
        assert {"optimizer", "loss forward", "whole step"} <= set(parts)
        assert all(ms > 0 for ms in parts.values())
