"""Bad input, faults and kills: one clear line (exit 2 for input, 1 for a failure while running),
never a traceback, never lost or overwritten user data, a NaN never saved, an exact resume."""

from __future__ import annotations

import gc
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from PIL import Image

from conftest import BACKEND, digit_like_images, invoke, run_kgen
from kgen import callbacks as kgen_callbacks
from kgen.callbacks import nonfinite_variables
from kgen.runs import Run, load_model
from kgen.signals import Interrupted, Signals, check
from kgen.train import TrainConfig, TrainingDiverged, train


def one_line(result, code: int = 2) -> str:
    """The single `kgen: error:` line of a CliRunner result that exited with ``code``: the only line of
    a refused command (besides [kgen] notes), or the one error line after a progress bar (code 1)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("[kgen]")]
    if code != 2:
        lines = [line for line in lines if line.startswith("kgen: error: ")]
    assert len(lines) == 1 and lines[0].startswith("kgen: error: "), result.output
    return lines[0]


def checkpoint_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a .weights.h5 file (weights, optimizer state, seed states) by its path."""
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda key, item: out.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None)
    return out


# -- bad input: every row of the report, each one line, exit 2, nothing left behind ---------------
def npz(tmp_path: Path, name: str, **arrays) -> Path:
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def png_folder(tmp_path: Path, count: int, broken: bool = False) -> Path:
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    if broken:
        (folder / "notes.png").write_text("this is not an image")
    return folder


def config_file(tmp_path: Path, content) -> Path:
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


images, labels = digit_like_images(20)
BAD_INPUT = {
    "png that is not an image": (lambda t: ["--dataset", png_folder(t, 3, broken=True)], "notes.png is not a readable image"),
    "npz x of shape (100,)": (lambda t: ["--dataset", npz(t, "a.npz", x=np.zeros(100, "float32"))], "x has shape (100,)"),
    "npz x of 5 dimensions": (lambda t: ["--dataset", npz(t, "a.npz", x=np.zeros((10, 2, 2, 2, 2), "float32"))],
                              "x has shape (10, 2, 2, 2, 2)"),
    "npz x_test of another shape": (lambda t: ["--dataset", npz(t, "a.npz", x=images, x_test=images[:, :20])],
                                    "both splits need the same shape"),
    "npz without examples": (lambda t: ["--dataset", npz(t, "a.npz", x=np.zeros((0, 28, 28), "uint8"))],
                             "x holds no examples"),
    "npz with NaN": (lambda t: ["--dataset", npz(t, "a.npz", x=np.full((10, 4), np.nan, "float32"))],
                     "x holds NaN or infinite values"),
    "config holding a list": (lambda t: ["--config", config_file(t, [1, 2])], "must be a JSON object of settings"),
    "config with epochs 'two'": (lambda t: ["--config", config_file(t, {"model": "ae", "epochs": "two"})],
                                 "'epochs' must be an integer or null, got 'two'"),
    "config with an unknown key": (lambda t: ["--config", config_file(t, {"model": "ae", "epoks": 3})],
                                   "unknown keys in --config"),
    "config that is not JSON": (lambda t: ["--config", config_file(t, "{epochs: 3")], "cannot read config"),
    "dataset path that does not exist": (lambda t: ["--dataset", "./nodir/"], "./nodir/: no such file or folder"),
    "infinite learning rate": (lambda t: ["--learning-rate", "inf"], "--learning-rate must be a finite number > 0"),
}


@pytest.mark.one_backend
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    make_args, message = BAD_INPUT[case]
    args = [str(a) for a in make_args(tmp_path)]
    model = [] if "--config" in args else ["ae"]
    before = set(tmp_path.rglob("*"))
    result = invoke("train", *model, *args, "--epochs", 1, "--run-dir", tmp_path / "run")
    assert message in one_line(result)
    assert set(tmp_path.rglob("*")) == before  # no run folder, no partial file


@pytest.mark.one_backend
def test_an_unknown_backend_in_the_environment_is_one_line(tmp_path):
    result = run_kgen("train", "vae", "--run-dir", str(tmp_path / "run"), env={"KERAS_BACKEND": "foo"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("kgen: error: KERAS_BACKEND=foo is not a backend")
    assert not (tmp_path / "run").exists()


@pytest.mark.one_backend
def test_a_tiny_image_folder_trains_and_draws_its_code_scatter(tmp_path):
    """10 PNGs hold out one test image: the code scatter of one code must still be drawn."""
    result = invoke("train", "ae", "--dataset", png_folder(tmp_path, 10), "--epochs", 1, "--steps-per-epoch", 5,
                    "--batch-size", 4, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "samples" / "codes-epoch-0001.png").is_file()


@pytest.mark.one_backend
def test_sample_never_overwrites_a_file_without_force(tmp_path, idx_folder):
    result = invoke("train", "vae", "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 1,
                    "--batch-size", 8, "--hidden", 8, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    out = tmp_path / "mine.png"
    out.write_bytes(b"my picture")
    assert "pass --force" in one_line(invoke("sample", tmp_path / "run", "--out", out))
    assert out.read_bytes() == b"my picture"
    assert invoke("sample", tmp_path / "run", "--out", out, "--force").exit_code == 0
    assert Image.open(out).size[0] > 1


@pytest.mark.one_backend
def test_a_diverging_run_is_one_line_and_leaves_no_run_folder(tmp_path, idx_folder):
    run_dir = tmp_path / "run"
    result = invoke("train", "ae", "--dataset", idx_folder, "--epochs", 2, "--batch-size", 16,
                    "--learning-rate", "1e30", "--run-dir", run_dir)
    line = one_line(result, code=1)
    # Precise with one step per execution (torch); else the steps since the last report, at most the
    # epoch's 10 (160 images / 16).
    assert re.search(r"NaN/inf in epoch 1, (batch \d+|batches 1-\d+);", line) and "nothing was kept" in line
    assert int(re.search(r"(\d+);", line).group(1)) <= 10
    assert not run_dir.exists()


# -- the NaN guard: nothing non-finite is ever checkpointed ---------------------------------------
class PoisonWeights(keras.callbacks.Callback):
    """NaN into the encoder's first kernel when epoch 2 starts."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.encoder.trainable_variables[0]
            kernel.assign(keras.ops.full(kernel.shape, float("nan")))


def poisoned_batches(monkeypatch, at_step: int):
    """kgen.train.pipelines whose training batch number ``at_step`` (0-based, of the whole run) is NaN."""
    import tensorflow as tf

    import kgen.train

    original = kgen.train.pipelines

    def pipelines(config, data, data_range, initial_epoch=0):
        train_batches, test = original(config, data, data_range, initial_epoch)
        counter = tf.Variable(0, dtype=tf.int64, trainable=False)

        def poison(x, y):
            step = counter.assign_add(1) - 1
            return tf.where(step == at_step, tf.fill(tf.shape(x), float("nan")), x), y

        train_batches.dataset = train_batches.dataset.map(poison)
        return train_batches, test

    monkeypatch.setattr(kgen.train, "pipelines", pipelines)


def assert_nothing_nonfinite_saved(run_dir: Path, epochs_kept: int) -> None:
    run = Run.open(run_dir)
    epoch, weights = run.latest_checkpoint()
    assert epoch == epochs_kept
    assert all(np.isfinite(a).all() for a in checkpoint_arrays(weights).values() if a.dtype.kind == "f")
    model = load_model(run)
    assert nonfinite_variables(model) == [] and all(np.isfinite(v["loss"]) for v in run.metrics()["history"])


def test_nan_weights_stop_training_and_keep_the_last_good_checkpoint(idx_folder, tmp_path):
    """However the kernels treat NaN weights (a fused ReLU may map them to 0 and keep the loss
    finite), the weights themselves are checked before every checkpoint."""
    config = TrainConfig("vae", dataset=str(idx_folder), epochs=4, steps_per_epoch=2, batch_size=16)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf in epoch 2.*last good checkpoint \(epoch 1\)"):
        train(config, run_dir=str(tmp_path / "nan"), verbose=0, extra_callbacks=[PoisonWeights()])
    assert_nothing_nonfinite_saved(tmp_path / "nan", epochs_kept=1)


def test_a_nan_batch_stops_training_and_says_which_batches(idx_folder, tmp_path, monkeypatch):
    poisoned_batches(monkeypatch, at_step=5)  # epoch 2 (3 steps per epoch), its third step
    config = TrainConfig("ae", dataset=str(idx_folder), epochs=4, steps_per_epoch=3, batch_size=16,
                         steps_per_execution=1 if BACKEND == "torch" else 3)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf in epoch 2, (batch 3|batches 1-3);.*\(epoch 1\)"):
        train(config, run_dir=str(tmp_path / "nan"), verbose=0)
    assert_nothing_nonfinite_saved(tmp_path / "nan", epochs_kept=1)


class PoisonLearningRate(keras.callbacks.Callback):
    """Every phase optimizer's learning rate to 1e30 when epoch 2 starts: the weights overflow."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            for optimizer in self.model.phase_optimizers.values():
                optimizer.learning_rate = 1e30


def test_a_huge_learning_rate_stops_training_before_anything_nonfinite_is_saved(idx_folder, tmp_path):
    config = TrainConfig("ae", dataset=str(idx_folder), epochs=4, steps_per_epoch=3, batch_size=16)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf in epoch 2.*last good checkpoint \(epoch 1\)"):
        train(config, run_dir=str(tmp_path / "nan"), verbose=0, extra_callbacks=[PoisonLearningRate()])
    assert_nothing_nonfinite_saved(tmp_path / "nan", epochs_kept=1)


@pytest.mark.one_backend
def test_resume_rewrites_a_damaged_model_file_from_the_checkpoint(three_epochs):
    overwrite_middle(three_epochs / "model.keras")
    result = run_kgen("train", "--resume", str(three_epochs))
    assert result.returncode == 0 and "rewrote" in result.stderr, result.stderr[-2000:]
    model = load_model(three_epochs)
    assert nonfinite_variables(model) == []


# -- corrupt files ---------------------------------------------------------------------------------
@pytest.fixture
def three_epochs(idx_folder, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    result = invoke("train", "ae", "--dataset", idx_folder, "--epochs", 3, "--steps-per-epoch", 2, "--batch-size", 16,
                    "--hidden", 16, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def overwrite_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # zeros over 64 bytes inside the data
    path.write_bytes(bytes(data))


@pytest.mark.one_backend
@pytest.mark.parametrize("damage", [truncate, overwrite_middle], ids=["truncated", "overwritten"])
def test_resume_skips_a_corrupt_checkpoint_for_the_one_before(three_epochs, damage):
    run = Run.open(three_epochs)
    damage(run.checkpoint_dir / "epoch-0003.weights.h5")
    result = run_kgen("train", "--resume", str(three_epochs), "--epochs", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epoch-0003.weights.h5 is corrupt" in result.stderr and "after epoch 2" in result.stderr
    assert "Traceback" not in result.stderr
    run = Run.open(three_epochs)
    assert run.latest_checkpoint()[0] == 4 and [h["epoch"] for h in run.metrics()["history"]] == [1, 2, 3, 4]


@pytest.mark.one_backend
def test_no_intact_checkpoint_is_one_line(three_epochs):
    run = Run.open(three_epochs)
    for _, path in run.checkpoints():
        overwrite_middle(path)
    line = one_line(invoke("train", "--resume", three_epochs, "--epochs", 4))
    assert "no intact checkpoint" in line


@pytest.mark.one_backend
def test_a_corrupt_checkpoint_pointer_falls_back_to_the_checkpoints_on_disk(three_epochs):
    (three_epochs / "checkpoints" / "latest.json").write_text("{garbage")
    result = run_kgen("train", "--resume", str(three_epochs), "--epochs", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "latest.json is corrupt" in result.stderr and "after epoch 3" in result.stderr


@pytest.mark.one_backend
@pytest.mark.parametrize("damage", [truncate, overwrite_middle], ids=["truncated", "overwritten"])
def test_a_corrupt_model_file_is_called_corrupt_by_every_command(three_epochs, tmp_path, damage):
    damage(three_epochs / "model.keras")
    for args in (["sample", three_epochs, "--out", tmp_path / "s.png"], ["evaluate", three_epochs],
                 ["encode", three_epochs, "--out", tmp_path / "c.npz"], ["export", three_epochs, "--out", tmp_path / "e"]):
        line = one_line(invoke(*args))
        assert "model.keras is corrupt" in line, args
    assert not (tmp_path / "e").exists() and not (tmp_path / "s.png").exists()


@pytest.mark.one_backend
def test_a_corrupt_config_is_one_line_for_every_command(three_epochs, tmp_path):
    (three_epochs / "config.json").write_text('{"model": ')
    for args in (["train", "--resume", three_epochs], ["sample", three_epochs, "--out", tmp_path / "s.png"],
                 ["evaluate", three_epochs], ["export", three_epochs, "--out", tmp_path / "e"]):
        assert "config.json is corrupt" in one_line(invoke(*args)), args


# -- kills: a resumed run is the uninterrupted run, bit for bit ------------------------------------
RESUME_CASES = {
    # one pass per epoch (the data's epoch variable), dynamic binarization, the VAE's noise
    "vae-binarized": ["vae", "--binarize", "--batch-size", "8", "--hidden", "16"],
    # a stream of passes (--steps-per-epoch), two phases with noise
    "gan-stream": ["gan", "--steps-per-epoch", "7", "--batch-size", "8", "--width", "16", "--latent-dim", "4",
                   "--d-steps", "2"],
}
EPOCHS = 4


def kill_at_random(args: list[str], run_dir: Path, rng: random.Random) -> int:
    """Start `kgen train ARGS`, kill -9 it at a random moment after a random epoch's checkpoint;
    returns the epochs it had completed."""
    process = subprocess.Popen([str(Path(sys.executable).with_name("kgen")), "train", *args, "--run-dir", str(run_dir)],
                               env={**os.environ, "KERAS_BACKEND": BACKEND}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    target, latest = rng.randint(1, EPOCHS - 2), run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:
            try:
                if json.loads(latest.read_text())["epoch"] >= target:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the next epoch (or its checkpoint)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return Run.open(run_dir).latest_checkpoint()[0]


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_a_run_killed_at_a_random_moment_resumes_to_the_uninterrupted_run_bit_for_bit(case, idx_folder, tmp_path):
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    args = [*RESUME_CASES[case], "--dataset", str(idx_folder), "--epochs", str(EPOCHS), "--seed", "3"]
    whole = invoke("train", *args, "--run-dir", tmp_path / "whole")  # in this process: no start-up to wait for
    assert whole.exit_code == 0, whole.output
    completed = kill_at_random(args, tmp_path / "killed", rng)
    assert 1 <= completed < EPOCHS, f"kill seed {seed}: the run completed {completed} epochs before the kill"
    resumed = run_kgen("train", "--resume", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = f"checkpoints/epoch-{EPOCHS:04d}.weights.h5"
    a, b = checkpoint_arrays(tmp_path / "whole" / final), checkpoint_arrays(tmp_path / "killed" / final)
    assert set(a) == set(b) and any("seed_state" in key for key in a)
    differ = [key for key in a if not np.array_equal(a[key], b[key])]
    assert differ == [], f"kill seed {seed}, killed after epoch {completed}: {differ[:5]} differ"
    histories = [Run.open(tmp_path / name).metrics()["history"] for name in ("whole", "killed")]
    assert [h.keys() for h in histories[0]] == [h.keys() for h in histories[1]]
    for whole_epoch, resumed_epoch in zip(*histories):  # logged means: summation order may differ by an ulp
        assert resumed_epoch == pytest.approx(whole_epoch, rel=1e-6)


@pytest.mark.one_backend
@pytest.mark.parametrize("when", ["at start", "after an epoch"])
def test_sigterm_ends_training_with_one_line_and_keeps_what_was_checkpointed(idx_folder, tmp_path, when):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("kgen")), "train", "ae", "--dataset", str(idx_folder), "--epochs", "500",
         "--steps-per-epoch", "2", "--batch-size", "16", "--run-dir", str(run_dir)],
        env={**os.environ, "KERAS_BACKEND": BACKEND}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = run_dir / ("config.json" if when == "at start" else "checkpoints/latest.json")
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and not marker.exists():
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("kgen: error: interrupted by SIGTERM; ")
    if run_dir.exists():  # an epoch completed before the signal: kept, and resumable
        assert Run.open(run_dir).committed_epoch() >= 1 and f"--resume {run_dir}" in last
    else:
        assert when == "at start" and "nothing was kept" in last


def lost_in_a_gc_callback(signum: int):
    """A garbage-collector callback that raises ``signum`` once, the first time it runs while a
    ``kgen.signals.Signals`` block handles that signal. The handler's exception then rises inside
    the callback, and Python prints and drops it ("Exception ignored in"): what happened on CI when
    SIGTERM arrived while JAX's gc callback ran."""
    fired = []

    def callback(phase, info):
        handler = signal.getsignal(signum)
        if not fired and isinstance(getattr(handler, "__self__", None), Signals):
            fired.append(phase)
            signal.raise_signal(signum)  # runs the handler now, inside this callback
    return callback, fired


@pytest.mark.one_backend
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception
def test_a_signal_whose_exception_python_dropped_is_raised_at_the_next_check():
    callback, fired = lost_in_a_gc_callback(signal.SIGTERM)
    gc.callbacks.append(callback)
    try:
        with pytest.raises(Interrupted) as raised, Signals() as signals:
            gc.collect()  # the callback raises the signal; gc drops its exception
            assert fired and signals.received == signal.SIGTERM  # still running: the exception was lost
            check()
    finally:
        gc.callbacks.remove(callback)
    assert raised.value.signum == signal.SIGTERM
    check()  # no block is active: nothing to raise


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_sigterm_lost_in_a_gc_callback_still_ends_training_after_the_batch(idx_folder, tmp_path, monkeypatch):
    callback, fired = lost_in_a_gc_callback(signal.SIGTERM)

    class CollectingGuard(kgen_callbacks.NaNGuard):
        """Collects garbage as the first batch begins: the signal comes in the middle of fit()."""

        def on_train_batch_begin(self, batch, logs=None):
            if not fired:
                gc.callbacks.append(callback)
                try:
                    gc.collect()
                finally:
                    gc.callbacks.remove(callback)
            super().on_train_batch_begin(batch, logs)

    monkeypatch.setattr(kgen_callbacks, "NaNGuard", CollectingGuard)
    result = invoke("train", "ae", "--dataset", idx_folder, "--epochs", 500, "--steps-per-epoch", 2,
                    "--batch-size", 16, "--hidden", 8, "--run-dir", tmp_path / "run")
    assert fired
    line = one_line(result, 128 + signal.SIGTERM)
    assert line == "kgen: error: interrupted by SIGTERM; before the first epoch completed; nothing was kept", line
    assert not (tmp_path / "run").exists()


# -- tuner state -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_search(idx_folder, tmp_path_factory) -> Path:
    tuner_dir = tmp_path_factory.mktemp("tuning") / "search"
    result = invoke("tune", "ae", "--dataset", idx_folder, "--max-trials", 1, "--epochs", 1, "--steps-per-epoch", 2,
                    "--batch-size", 16, "--hidden", 8, "--best-grids", 0, "--tuner-dir", tuner_dir)
    assert result.exit_code == 0, result.output
    return tuner_dir


@pytest.mark.one_backend
@pytest.mark.parametrize("state", ["tune.json", "search/oracle.json", "search/tuner0.json", "search/trial_0/trial.json"])
def test_a_corrupt_tuner_state_is_one_line_naming_the_file(finished_search, tmp_path, state):
    import shutil

    copy = tmp_path / "search"
    shutil.copytree(finished_search, copy)
    (copy / state).write_text("{half a json")
    results = (copy / "results.csv").read_text()
    line = one_line(invoke("tune", "--max-trials", 2, "--tuner-dir", copy, "--resume"))
    assert f"{copy / state} is corrupt" in line
    assert (copy / "results.csv").read_text() == results  # nothing of the search was lost
