"""`kgen tune`: real KerasTuner searches on a tiny IDX dataset, on every backend."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import pytest

from conftest import BACKEND, invoke
from kgen import tuning
from kgen.models import MODELS

# Every trial builds a new model, which JAX would compile again: tiny trials run faster without jit
# (on TensorFlow and torch it is off by default); whole batches only (40 test images: 2 x 16), so that
# eager JAX compiles each operation for one batch shape.
FAST = ("--steps-per-epoch", 2, "--validation-steps", 2, "--batch-size", 16, "--no-jit")
# Tiny dense autoencoder trials: 2 steps of 16 images per epoch.
TINY_AE = (*FAST, "--hidden", 16, "--latent-dim", 4)


def results(tuner_dir: Path) -> list[dict]:
    with open(tuner_dir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def scalars(folder: Path, tag: str) -> dict[int, float]:
    """step -> value of a Keras TensorBoard scalar (written as a tensor summary)."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def hparams_record(folder: Path) -> dict:
    """The hyperparameter values the hparams dashboard reads from a trial's folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")  # KeyError: no hparams data at all
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}


@pytest.fixture(scope="module")
def random_search(idx_folder, tmp_path_factory) -> dict:
    """A random search of two trials, killed (kill -9) while its second trial trains and resumed."""
    tuner_dir = tmp_path_factory.mktemp("tune") / "random"
    args = ["tune", "ae", "--dataset", str(idx_folder), "--tuner", "random", "--max-trials", "2", "--epochs", "2",
            *map(str, TINY_AE), "--tuner-dir", str(tuner_dir)]
    process = subprocess.Popen([str(Path(sys.executable).with_name("kgen")), *args],
                               env={**os.environ, "KERAS_BACKEND": BACKEND},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = tuner_dir / "logs" / "1" / "execution0" / "train"  # trial 1 trains: trial 0 is finished and saved
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and not second.exists():
        time.sleep(0.05)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert running, "the search ended before it could be killed"
    killed_at = time.time()
    before = results(tuner_dir)
    time.sleep(0.05)  # file times after the kill are later than killed_at
    result = invoke(*args, "--resume")  # the same command line, resumed
    assert result.exit_code == 0, result.output
    return {"dir": tuner_dir, "output": result.output, "before": before, "killed_at": killed_at}


@pytest.fixture(scope="module")
def classifier_run(idx_folder, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("judge") / "classifier"
    result = invoke("train", "classifier", "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 4,
                    "--batch-size", 16, "--no-jit", "--arch", "dense", "--width", 16, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


# -- searches ----------------------------------------------------------------------------------
@pytest.mark.one_backend
def test_a_search_killed_after_its_first_trial_resumes_without_repeating_it(random_search):
    tuner_dir, killed_at = random_search["dir"], random_search["killed_at"]
    assert [(r["trial"], r["status"]) for r in random_search["before"]] == [("0", "COMPLETED")]
    rows = results(tuner_dir)
    assert [(r["trial"], r["status"]) for r in rows] == [("0", "COMPLETED"), ("1", "COMPLETED")]
    assert rows[0] == random_search["before"][0]
    assert "[kgen] continuing the search in" in random_search["output"]
    # Trial 0 trained once, before the kill; the interrupted trial 1 trained again, from scratch.
    [first] = (tuner_dir / "logs" / "0" / "execution0" / "train").iterdir()
    [second] = (tuner_dir / "logs" / "1" / "execution0" / "train").iterdir()
    assert first.stat().st_mtime < killed_at < second.stat().st_mtime


def test_random_search_prints_and_saves_the_results_and_the_best_config(random_search):
    tuner_dir, output = random_search["dir"], random_search["output"]
    rows = results(tuner_dir)
    assert [r["trial"] for r in rows] == ["0", "1"] and {r["status"] for r in rows} == {"COMPLETED"}
    assert list(rows[0]) == ["trial", "status", "epochs", "learning_rate", "val_loss"]  # only the rate is free
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[0] != rates[1] and all(1e-4 <= r <= 1e-2 for r in rates)
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert f"best: trial {best['trial']}, val_loss = {float(best['val_loss']):.6g} (min)" in output
    assert "trial  status     epochs  learning_rate  val_loss" in output
    config = json.loads((tuner_dir / "best_config.json").read_text())
    assert config["model"] == "ae" and config["model_options"] == {"hidden": 16, "latent_dim": 4}
    assert config["learning_rate"] == pytest.approx(float(best["learning_rate"]), rel=1e-12)
    assert config["epochs"] == 2 and config["steps_per_epoch"] == 2 and config["batch_size"] == 16
    settings = json.loads((tuner_dir / "tune.json").read_text())
    assert settings["objective"] == "val_loss" and settings["direction"] == "min" and settings["backend"] == BACKEND


def test_every_trial_logs_to_its_own_folder_with_the_hparams_dashboard(random_search):
    tuner_dir = random_search["dir"]
    for row in results(tuner_dir):
        folder = tuner_dir / "logs" / row["trial"] / "execution0"
        assert hparams_record(folder) == {"learning_rate": pytest.approx(float(row["learning_rate"]), rel=1e-9)}
        assert set(scalars(folder / "train", "epoch_loss")) == {1, 2}  # step n: n completed epochs
        assert scalars(folder / "validation", "epoch_loss")[2] == pytest.approx(float(row["val_loss"]), rel=1e-5)


def test_the_best_trials_sample_grids_are_logged_as_in_training(random_search):
    from test_cli import event_tags

    tuner_dir = random_search["dir"]
    ranked = sorted(results(tuner_dir), key=lambda r: float(r["val_loss"]))
    for rank, row in enumerate(ranked, start=1):
        folder = tuner_dir / "best" / f"{rank}-trial_{row['trial']}"
        assert {p.name for p in folder.iterdir()} == {"reconstructions-epoch-0002.png", "codes-epoch-0002.png"}
        assert {"reconstructions", "codes"} <= event_tags(tuner_dir / "logs" / row["trial"] / "execution0" / "images")


def test_the_best_config_retrains_the_winner_with_kgen_train(random_search, tmp_path):
    tuner_dir = random_search["dir"]
    best = min(results(tuner_dir), key=lambda r: float(r["val_loss"]))
    result = invoke("train", "--config", tuner_dir / "best_config.json", "--run-dir", tmp_path / "winner")
    assert result.exit_code == 0, result.output
    # Same config, same seed: the retrained model ends where the trial ended.
    final = json.loads((tmp_path / "winner" / "metrics.json").read_text())["history"][-1]
    assert final["val_loss"] == pytest.approx(float(best["val_loss"]), rel=1e-4)


def test_a_finished_search_resumed_runs_no_trial_and_other_settings_are_refused(random_search):
    tuner_dir = random_search["dir"]
    before = results(tuner_dir)
    result = invoke("tune", "--tuner-dir", tuner_dir, "--resume")
    assert result.exit_code == 0, result.output
    assert "Running Trial" not in result.output and results(tuner_dir) == before
    result = invoke("tune", "ae", "--tuner-dir", tuner_dir, "--resume", "--tuner", "bayesian", "--latent-dim", 8)
    assert result.exit_code == 2
    assert ("these differ: --tuner bayesian (the search has random); --latent-dim 8 (the search has 4)"
            in result.output)


@pytest.mark.one_backend
def test_hyperband_continues_the_best_short_trials_from_their_checkpoints(idx_folder, tmp_path):
    tuner_dir = tmp_path / "hyperband"
    # max_epochs 3, factor 3: three 1-epoch trials, then the best one trained on to epoch 3.
    result = invoke("tune", "vae", "--dataset", idx_folder, "--tuner", "hyperband", "--max-trials", 4, "--epochs", 3,
                    *FAST, "--hidden", 16, "--best-grids", 1, "--tuner-dir", tuner_dir)
    assert result.exit_code == 0, result.output
    rows = results(tuner_dir)
    assert [(r["epochs"], r["continues"]) for r in rows[:3]] == [("1", "")] * 3
    first = min(rows[:3], key=lambda r: float(r["val_negative_elbo"]))  # the VAE's default objective
    assert rows[3]["epochs"] == "3" and rows[3]["continues"] == first["trial"]
    assert all(rows[3][k] == first[k] for k in ("learning_rate", "latent_dim", "beta"))
    # fit() got Hyperband's initial_epoch: the continued trial logged epochs 2 and 3 only.
    folder = tuner_dir / "logs" / rows[3]["trial"] / "execution0"
    assert set(scalars(folder / "train", "epoch_loss")) == {2, 3}
    assert float(rows[3]["val_negative_elbo"]) < float(first["val_negative_elbo"])
    best = min(rows, key=lambda r: float(r["val_negative_elbo"]))
    config = json.loads((tuner_dir / "best_config.json").read_text())
    assert config["epochs"] == int(best["epochs"]) and config["model_options"]["beta"] == float(best["beta"])
    # The negative ELBO is the beta = 1 bound whatever beta the trial trained with.
    logged = {tag: scalars(folder / "validation", f"epoch_{tag}")[3] for tag in ("reconstruction_loss", "kl_loss")}
    assert float(rows[3]["val_negative_elbo"]) == pytest.approx(sum(logged.values()), rel=1e-5)
    assert set(hparams_record(folder)) == {"learning_rate", "latent_dim", "beta"}


def test_fid_drives_a_bayesian_search_of_a_generator(idx_folder, classifier_run, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("# two network sizes, a fixed rate\nwidth: {values: [8, 16]}\nlearning_rate: 1.0e-3\n"
                     "d_steps: null\n")
    tuner_dir = tmp_path / "bayesian"
    result = invoke("tune", "gan", "--dataset", idx_folder, "--tuner", "bayesian", "--max-trials", 2, "--epochs", 2,
                    *FAST, "--latent-dim", 8, "--space", space, "--classifier", classifier_run, "--eval-samples", 100,
                    "--best-grids", 1, "--tuner-dir", tuner_dir)
    assert result.exit_code == 0, result.output
    rows = results(tuner_dir)
    assert list(rows[0]) == ["trial", "status", "epochs", "learning_rate", "width", "fid"]
    assert {r["width"] for r in rows} == {"8", "16"} and {r["learning_rate"] for r in rows} == {"0.001"}
    for row in rows:  # the score of a trial is the FID its last epoch logged
        logged = scalars(tuner_dir / "logs" / row["trial"] / "execution0" / "train", "epoch_fid")
        assert set(logged) == {1, 2} and float(row["fid"]) == pytest.approx(logged[2], rel=1e-5)
    fids = [float(r["fid"]) for r in rows]
    assert fids[0] != fids[1]
    best = rows[fids.index(min(fids))]
    assert f"best: trial {best['trial']}, fid = " in result.output
    config = json.loads((tuner_dir / "best_config.json").read_text())
    assert config["model_options"] == {"width": int(best["width"]), "latent_dim": 8}
    assert (tuner_dir / "best" / f"1-trial_{best['trial']}" / "samples-epoch-0002.png").is_file()


@pytest.mark.one_backend
def test_a_search_whose_trials_keep_failing_stops_with_one_line(idx_folder, tmp_path):
    # Adam's first steps move every weight by about the learning rate: 1e37 overflows float32 at once.
    (tmp_path / "huge.yaml").write_text("learning_rate: {min: 1.0e+37, max: 3.0e+38, sampling: log}\n")
    tuner_dir = tmp_path / "diverging"
    result = invoke("tune", "ae", "--dataset", idx_folder, "--max-trials", 5, "--epochs", 1, *TINY_AE,
                    "--space", tmp_path / "huge.yaml", "--best-grids", 0, "--tuner-dir", tuner_dir)
    assert result.exit_code == 1, result.output
    # The guard sees the loss once per compiled execution: the batches since its last look.
    assert re.fullmatch(r"kgen: error: the search stopped after 3 failed trials in a row; the last: loss became "
                        r"NaN/inf in epoch 1, (batch [12]|batches 1-2)", result.output.splitlines()[-1])
    assert re.search(r"\[kgen\] trial 0 failed: loss became NaN/inf in epoch 1, (batch [12]|batches 1-2) \(traceback in ",
                     result.output)
    assert "Traceback" not in result.output
    assert [(r["trial"], r["status"], r["val_loss"]) for r in results(tuner_dir)] == [
        ("0", "FAILED", ""), ("1", "FAILED", ""), ("2", "FAILED", "")]


def test_the_error_rate_objective_is_the_held_out_classification_error(classifier_run):
    from kgen import evaluate
    from kgen.runs import Run
    from kgen.runs import load_model
    from kgen.tuning.objectives import HeldOutErrorRate

    model = load_model(classifier_run)
    x, labels = evaluate.split_arrays(Run.open(classifier_run), "test")
    callback = HeldOutErrorRate(x, labels)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    summary = evaluate.evaluate(model, Run.open(classifier_run))["metrics"]
    assert logs["error_rate"] == pytest.approx(summary["error_rate"], abs=1e-12) and 0 < logs["error_rate"] < 0.9
    assert "error_rate" in tuning.objectives.available_objectives(model, has_test_split=True)


# -- bad input ---------------------------------------------------------------------------------
SPACE_ERRORS = [
    ("bad.yaml", "beta: {min: 1, max: [\n", "not valid YAML"),
    ("bad.json", '{"beta": {"min": 1,}}', "not valid JSON"),
    ("range.yaml", "beta: {min: 4, max: 1}", "'beta': min must be < max, got 4 and 1"),
    ("keys.yaml", "beta: {low: 1, high: 4}", "'beta': a range is {min, max[, step][, sampling]}, got keys high, low"),
    ("unknown.yaml", "lambda: [1, 2]", "model 'vae' has no option 'lambda'; it has: latent_dim, arch, hidden"),
    ("choice.yaml", "decoder: [bernoulli, poisson]", "'decoder': --decoder must be one of bernoulli, gaussian"),
    ("log.yaml", "beta: {min: 0, max: 4, sampling: log}", "'beta': log sampling needs min > 0"),
    ("list.yaml", "- beta", "expected a mapping of option names to ranges"),
    ("space.txt", "beta: 1", "expected a .yaml, .yml or .json file"),
]


@pytest.mark.one_backend
@pytest.mark.parametrize("name,text,message", SPACE_ERRORS, ids=[e[0] for e in SPACE_ERRORS])
def test_a_malformed_space_file_is_one_clear_line(tmp_path, idx_folder, name, text, message):
    (tmp_path / name).write_text(text)
    result = invoke("tune", "vae", "--dataset", idx_folder, "--space", tmp_path / name, "--tuner-dir", tmp_path / "t")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"kgen: error: --space {tmp_path / name}: ") and message in result.output
    assert result.output.count("\n") == 1 and not (tmp_path / "t").exists()


@pytest.mark.parametrize("args,message", [
    (["--tuner", "grid"], "--tuner must be one of random, hyperband, bayesian, got 'grid'"),
    (["--max-trials", 0], "--max-trials must be >= 1, got 0"),
    (["--direction", "up"], "--direction must be min or max, got 'up'"),
    (["--objective", "val_psnr"], "unknown objective 'val_psnr'; model 'ae' offers: val_loss, loss"),
    (["--objective", "fid"], "'fid' needs a model that samples; model 'ae' offers: val_loss, loss"),
    (["--beta", 2], "model 'ae' has no option --beta"),
    (["--resume"], "no search to resume in"),
])
@pytest.mark.one_backend
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, idx_folder, args, message):
    result = invoke("tune", "ae", "--dataset", idx_folder, "--tuner-dir", tmp_path / "t", *args)
    assert result.exit_code == 2, result.output
    # The error is the last line; a data-dependent check may follow the "[kgen] data: ..." line.
    *before, last = result.output.splitlines()
    assert last.startswith("kgen: error: ") and message in last, result.output
    assert all(line.startswith("[kgen] ") for line in before) and not (tmp_path / "t").exists()


@pytest.mark.one_backend
def test_an_existing_search_is_never_overwritten(random_search, idx_folder):
    tuner_dir = random_search["dir"]
    before = (tuner_dir / "results.csv").read_text()
    result = invoke("tune", "ae", "--dataset", idx_folder, "--tuner-dir", tuner_dir)
    assert result.exit_code == 2 and "already exists; continue its search with --resume" in result.output
    assert (tuner_dir / "results.csv").read_text() == before


# -- spaces ------------------------------------------------------------------------------------
@pytest.mark.one_backend
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_default_space_names_only_the_models_options_and_valid_values(model):
    options = tuning.searchable_options(model)
    assert set(tuning.default_space(model)) <= set(options), "a default space names an option the model lacks"
    space = tuning.search_space(model, {})  # check_spec validates every value against its Option
    hp = keras_tuner.HyperParameters()
    values = {name: tuning.declare(hp, name, spec, options[name]) for name, spec in space.items()}
    assert all(isinstance(values[n], options[n].type) for n in values if n != "learning_rate")


@pytest.mark.one_backend
def test_spaces_follow_the_architecture_and_the_command_line():
    assert tuning.search_space("ae", {})["hidden"] == tuning.Choice(256, 512, 1024)
    assert tuning.search_space("ae", {"arch": "conv"})["hidden"] == tuning.Choice(8, 16, 32)
    assert tuning.search_space("dcgan", {})["width"] == tuning.Choice(32, 64, 128)  # dcgan is conv only
    assert "hidden" not in tuning.search_space("ae", {}, {"arch": ["dense", "conv"]})  # per-arch default
    space = tuning.search_space("vae", {"beta": 2.0, "learning_rate": 1e-3}, {"latent_dim": {"min": 2, "max": 6, "step": 2},
                                                                            "hidden": 64, "arch": None})
    assert space == {"latent_dim": tuning.Range(2, 6, 2), "hidden": tuning.Fixed(64)}
    with pytest.raises(tuning.SpaceError, match="'beta' is fixed by --beta on the command line"):
        tuning.search_space("vae", {"beta": 2.0}, {"beta": [1, 2]})
    with pytest.raises(tuning.SpaceError, match="integer option"):
        tuning.search_space("vae", {}, {"latent_dim": {"min": 2, "max": 6.5}})


@pytest.mark.one_backend
def test_space_files_in_yaml_and_json_read_the_same(tmp_path):
    (tmp_path / "s.yaml").write_text("beta: {min: 0.5, max: 4, sampling: log}\nlatent_dim: [2, 4]\nhidden: 64\n")
    (tmp_path / "s.json").write_text(json.dumps({"beta": {"min": 0.5, "max": 4, "sampling": "log"},
                                                 "latent_dim": [2, 4], "hidden": 64}))
    spaces = [tuning.search_space("vae", {}, tuning.read_space_file(tmp_path / f)) for f in ("s.yaml", "s.json")]
    assert spaces[0] == spaces[1]
    assert spaces[0]["beta"] == tuning.Range(0.5, 4.0, sampling="log") and spaces[0]["hidden"] == tuning.Fixed(64)
    # tune.json keeps the resolved space in the file form, which reads back to the same space.
    as_file = {k: tuning.spec_to_json(v) for k, v in spaces[0].items()}
    assert tuning.search_space("vae", {}, as_file) == spaces[0]
