"""Committees (ensembles): the average of their members, their files, ONNX, serving, the CLI
that builds and trains them; and the distillation loss that teaches one model a committee."""

import json

import numpy as np
import pytest
from conftest import InterruptAt, finish, start

from numlp import Dense, Flatten, ReLU, Sequential, Sigmoid, Softmax, Tanh
from numlp.committee import Committee
from numlp.gradcheck import check_loss
from numlp.io import ModelFileError, load_model, save_committee, save_model
from numlp.layers import softmax
from numlp.losses import Distillation, SoftmaxCrossEntropy


def tiny(hidden=8, classes=4, seed=0, head=None, input_shape=(3, 3)):
    layers = [Flatten(), Dense(9, hidden), ReLU(), Dense(hidden, classes)]
    return Sequential(layers + ([head] if head else []), input_shape=input_shape, seed=seed)


@pytest.fixture
def members():
    return [tiny(8, seed=0), tiny(5, seed=1), Sequential(
        [Flatten(), Dense(9, 6), Tanh(), Dense(6, 4), Softmax()], input_shape=(3, 3), seed=2
    )]  # fmt: skip


def test_the_committee_answers_with_the_mean_of_its_members_probabilities(members):
    x = np.random.default_rng(0).normal(size=(50, 3, 3)).astype(np.float32)
    committee = Committee(members)
    mean = np.mean([m.predict_proba(x) for m in members], axis=0)
    np.testing.assert_allclose(committee.predict_proba(x), mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(committee.predict_proba(x).sum(axis=1), 1, atol=1e-6)
    assert np.array_equal(committee.predict(x), mean.argmax(axis=1))
    y = np.arange(50) % 4
    scores = committee.evaluate(x, y)
    assert scores["accuracy"] == np.mean(mean.argmax(axis=1) == y)
    assert scores["loss"] == pytest.approx(-np.log(mean[np.arange(50), y]).mean(), rel=1e-5)
    assert "Committee of 3 members" in committee.summary() and "9-8-4" in committee.summary()


@pytest.mark.parametrize(
    "odd, message",
    [
        (lambda: tiny(classes=5), "member 1 has 5 classes, member 0 has 4"),
        (lambda: Sequential([Dense(4, 4)], input_shape=(4,)), "member 1 takes inputs of shape"),
        (lambda: tiny(head=Sigmoid()), "member 1 ends with Sigmoid"),
        (lambda: tiny(classes=1), "single output"),
    ],
)
def test_a_member_that_does_not_fit_is_refused_with_a_clear_message(odd, message):
    with pytest.raises(ValueError, match=message):
        Committee([tiny(), odd()])
    with pytest.raises(ValueError, match="at least 2 members"):
        Committee([tiny()])


def test_a_committee_file_round_trips_and_is_checked_on_load(members, tmp_path):
    x = np.random.default_rng(1).normal(size=(20, 3, 3)).astype(np.float32)
    committee = Committee(members)
    path = save_committee(
        tmp_path / "c.npz",
        committee,
        [{"test_accuracy": 0.5}, {}, {}],
        class_names=list("abcd"),
        preprocessing={"scale": 1 / 255},
        training={"members": 3},
    )
    loaded, header = load_model(path)
    assert isinstance(loaded, Committee) and len(loaded.members) == 3
    assert np.array_equal(loaded.predict_proba(x), committee.predict_proba(x))
    assert header["class_names"] == list("abcd")
    assert header["members"][0]["training"] == {"test_accuracy": 0.5}

    # a file whose members disagree (one claims 5 classes) is refused, naming the member
    arrays = dict(np.load(path))
    header = json.loads(arrays.pop("__header__").tobytes())
    other = tiny(classes=5)
    header["members"][1]["model"] = other.config()
    header.pop("class_names")  # (with them, the names are what is refused first)
    arrays = {k: v for k, v in arrays.items() if not k.startswith("members.1.")}
    arrays |= {f"members.1.{k}": v for k, v in other.state_dict().items()}
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="member 1 has 5 classes"):
        load_model(tmp_path / "bad.npz")
    # arrays that belong to no member, and a lying member architecture
    arrays["members.7.layers.0.W"] = np.zeros((2, 2), np.float32)
    np.savez(tmp_path / "extra.npz", **arrays)
    with pytest.raises(ModelFileError, match="belong to no member"):
        load_model(tmp_path / "extra.npz")
    header["members"][0]["model"]["layers"][1]["out_features"] = 10**6
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "lying.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"member 0\).*declares W of shape"):
        load_model(tmp_path / "lying.npz")


def test_onnx_runs_a_committee_as_one_graph_that_averages(members, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from numlp.export import export_onnx

    committee = Committee(members)
    path = export_onnx(committee, tmp_path / "c.onnx")
    x = np.random.default_rng(2).normal(size=(64, 3, 3)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "probabilities"
    np.testing.assert_allclose(
        session.run(None, {"input": x})[0], committee.predict_proba(x), rtol=1e-5, atol=1e-6
    )


def test_serve_answers_with_a_committee(tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from numlp.serve import create_app

    digits = [
        Sequential([Flatten(), Dense(784, 16), ReLU(), Dense(16, 10)], input_shape=(28, 28), seed=s)
        for s in range(2)
    ]
    path = save_committee(tmp_path / "c.npz", Committee(digits), preprocessing={"scale": 1 / 255})
    committee, header = load_model(path)
    client = TestClient(create_app(committee, header))
    pixels = np.zeros((28, 28), int)
    pixels[5:20, 12:15] = 255
    answer = client.post("/predict", json={"pixels": pixels.tolist()}).json()
    expected = committee.predict_proba(pixels[None] / 255)[0]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5)
    described = client.get("/model").json()
    assert len(described["members"]) == 2 and described["layers"] is None


# -- distillation --------------------------------------------------------------------------


def test_distillation_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    teacher = softmax(rng.normal(size=(6, 5)) * 3)
    for temperature, weight, smoothing in ((4.0, 0.7, 0.1), (1.0, 1.0, 0.0), (0.5, 0.3, 0.0)):
        loss = Distillation(lambda x: teacher, temperature, weight, smoothing)
        loss.see_inputs(np.zeros((6, 2)))
        # eps 1e-5: at 1e-6 the rounding of a loss near 1 already shows in the 7th digit
        result = check_loss(loss, rng.normal(size=(6, 5)) * 2, rng.integers(0, 5, 6), eps=1e-5)
        assert result.ok, result


def test_distillation_with_no_weight_on_the_teacher_is_the_cross_entropy():
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(8, 10)), rng.integers(0, 10, 8)
    loss = Distillation(lambda x: softmax(rng.normal(size=(8, 10))), 1.0, 0.0)
    loss.see_inputs(np.zeros((8, 1)))
    plain = SoftmaxCrossEntropy()
    assert loss.forward(logits, labels) == pytest.approx(plain.forward(logits, labels))
    np.testing.assert_allclose(loss.backward(), plain.backward())
    # the soft term alone is 0 when the model already says what the teacher says
    same = Distillation(lambda x: softmax(logits), 3.0, 1.0)
    same.see_inputs(np.zeros((8, 1)))
    assert same.forward(logits, labels) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="call see_inputs"):
        Distillation(lambda x: None).forward(logits, labels)


# -- the command line, on real digits ------------------------------------------------------


def small_argv(small_data, *extra):
    return ["--data-dir", small_data.parent, "--no-download", *extra]


@pytest.mark.slow
def test_ensemble_evaluate_predict_and_report_from_the_command_line(small_data, tmp_path):
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"run{seed}"
        train = ["train", "--dataset", "kmnist", "--hidden", "32", "--epochs", "2", "--seed", seed]
        status, _, err = finish(start(*train, "--out", out, "--no-plots",
                                      *small_argv(small_data)))  # fmt: skip
        assert status == 0, err
        runs.append(out)
    status, out, err = finish(start("ensemble", *runs, "--out", tmp_path / "c.npz",
                                    *small_argv(small_data)))  # fmt: skip
    assert status == 0, err
    assert "committee of 2: test accuracy" in out and "members" in out
    committee, header = load_model(tmp_path / "c.npz")
    member, own = load_model(runs[0] / "model.npz")
    assert header["training"]["member_test_accuracy"][0] == own["training"]["test_accuracy"]
    assert header["members"][0]["training"]["source"] == str(runs[0])

    status, out, err = finish(start("evaluate", tmp_path / "c.npz", "--json",
                                    *small_argv(small_data)))  # fmt: skip
    assert status == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(header["training"]["test_accuracy"])

    x = (np.arange(784).reshape(1, 28, 28) % 256).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    status, out, err = finish(start("predict", tmp_path / "c.npz", tmp_path / "x.npy", "--json"))
    assert status == 0, err
    top = json.loads(out)[0]["top"][0]
    expected = committee.predict_proba(x / 255).max()
    assert top["probability"] == pytest.approx(float(expected), rel=1e-5)
    assert member.classes == 10

    # members that disagree: another dataset's model is refused in one line, nothing written
    other = tmp_path / "other.npz"
    save_model(other, member, dataset="fashion-mnist", class_names=list("0123456789"),
               preprocessing=header["preprocessing"])  # fmt: skip
    status, _, err = finish(start("ensemble", runs[0], other, "--out", tmp_path / "x.npz"))
    assert status == 2 and "its dataset 'fashion-mnist' differs" in err
    assert "Traceback" not in err and not (tmp_path / "x.npz").exists()
    # one run is no committee; an existing committee file is kept without --overwrite
    status, _, err = finish(start("ensemble", runs[0], "--out", tmp_path / "x.npz"))
    assert status == 2 and "a committee needs at least 2 members, got 1" in err
    # copies vote as one: the same run twice, or a run beside a committee holding it, refused
    for given in ([runs[0], runs[0]], [runs[0] / "model.npz", tmp_path / "c.npz"]):
        status, _, err = finish(start("ensemble", *given, "--out", tmp_path / "x.npz"))
        assert status == 2 and "holds a model already given" in err, err
        assert "Traceback" not in err and not (tmp_path / "x.npz").exists()
    before = (tmp_path / "c.npz").read_bytes()
    status, _, err = finish(start("ensemble", *runs, "--out", tmp_path / "c.npz"))
    assert status == 2 and "c.npz exists; choose another --out or pass --overwrite" in err
    assert (tmp_path / "c.npz").read_bytes() == before


@pytest.mark.slow
def test_train_members_makes_a_committee_run_that_resumes_and_reports(small_data, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "committee"
    argv = ["train", "--dataset", "kmnist", "--hidden", "32", "--epochs", "1", "--members", "2"]
    status, text, err = finish(start(*argv, "--out", out, *small_argv(small_data)))
    assert status == 0, err
    assert "member 2/2 (seed 1)" in text and "committee of 2: test accuracy" in text
    assert isinstance(load_model(out / "model.npz")[0], Committee)
    assert (out / "members" / "01-seed1" / "model.npz").is_file()
    assert (out / "confusion.png").is_file() and (out / "curves.png").is_file()

    # --resume with more epochs trains every member further, one by one
    status, text, err = finish(start("train", "--resume", out, "--epochs", "2",
                                     *small_argv(small_data)))  # fmt: skip
    assert status == 0, err
    assert text.count("resuming at epoch 2") == 2
    header = load_model(out / "model.npz")[1]
    assert [m["training"]["epochs"] for m in header["members"]] == [2, 2]

    status, text, err = finish(start("report", out, *small_argv(small_data)[:2]))
    assert status == 0, err
    page = (out / "report.html").read_text()
    assert "a committee of 2 members" in page and "<h2>Members</h2>" in page


def quiet_options(small_data) -> dict:
    from numlp.data.datasets import DataSource
    from numlp.run import Console

    return dict(source=DataSource(small_data.parent, download=False), console=Console(quiet=True))


def test_a_committee_interrupted_in_a_member_resumes_from_there(small_data, tmp_path):
    from numlp.config import TrainConfig
    from numlp.run import CommitteeInterrupted, run_training

    config = TrainConfig(dataset="kmnist", hidden=(16,), epochs=2, members=2).validate()
    out = tmp_path / "c"
    options = quiet_options(small_data)
    with pytest.raises(CommitteeInterrupted, match=f"numlp train --resume {out}"):
        run_training(config, out, callbacks=[InterruptAt(30)], **options)
    assert (out / "members" / "00-seed0" / "checkpoint.npz").is_file()
    assert not (out / "model.npz").exists()
    summary = run_training(config, out, resume=True, **options)
    assert summary["members"] == 2 and summary["test_accuracy"] > 0.5


def test_a_distilled_student_learns_from_a_committee_file(small_data, tmp_path, capsys):
    from numlp.config import TrainConfig
    from numlp.run import run_training

    options = quiet_options(small_data)
    base = TrainConfig(dataset="kmnist", hidden=(32,), epochs=2)
    teacher = run_training(base.updated(members=2), tmp_path / "teacher", **options)
    student = base.updated(teacher=teacher["model_path"], distill_weight=0.7, hidden=(16,))
    summary = run_training(student, tmp_path / "student", **options)
    assert summary["test_accuracy"] > 0.5
    assert "training loss with distillation" in capsys.readouterr().out
    config = load_model(tmp_path / "student" / "model.npz")[1]["training"]["config"]
    assert config["teacher"] == teacher["model_path"] and config["distill_weight"] == 0.7

    centred = student.updated(input_shift=-0.5)
    with pytest.raises(ValueError, match="set input_scale and input_shift to match"):
        run_training(centred, tmp_path / "centred", **options)
    assert not (tmp_path / "centred").exists()
    with pytest.raises(ValueError, match=r"teacher: .*missing.npz: no such model file"):
        missing = student.updated(teacher=str(tmp_path / "missing.npz"))
        run_training(missing, tmp_path / "m", **options)
    with pytest.raises(ValueError, match="distillation trains logits"):
        student.updated(output="softmax")
