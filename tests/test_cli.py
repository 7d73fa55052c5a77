"""The `kgen` CLI (CliRunner and a real subprocess), runs, resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import BACKEND, invoke, run_kgen
from kgen.runs import Run, load_model
from kgen.train import TrainConfig, TrainingDiverged, build_model, train


def event_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    return set(tags.get("images", [])) | set(tags.get("tensors", [])) | set(tags.get("scalars", []))


@pytest.fixture(scope="module")
def vae_run(idx_folder, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "vae-run"
    result = invoke("train", "vae", "--dataset", idx_folder, "--epochs", 2, "--steps-per-epoch", 3,
                    "--batch-size", 16, "--run-dir", run_dir, "--beta", "0.5")
    assert result.exit_code == 0, result.output
    assert f"run directory: {run_dir}" in result.output and "tensorboard --logdir" in result.output
    return run_dir


@pytest.mark.one_backend
def test_version_and_list():
    assert invoke("--version").output.strip().startswith("kgen ")
    listing = invoke("list").output
    assert "vae:" in listing and "--beta" in listing and "ae:" in listing


def test_train_writes_a_complete_run(vae_run):
    run = Run.open(vae_run)
    config = run.config()
    assert config["model"] == "vae" and config["model_options"] == {"beta": 0.5}
    assert config["backend"] == BACKEND and config["epochs"] == 2
    assert run.model_path.is_file() and run.latest_checkpoint()[0] == 2
    metrics = run.metrics()
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert {"loss", "kl_loss", "reconstruction_loss", "val_loss"} <= set(metrics["history"][0])
    assert np.isfinite(metrics["final"]["loss"])
    assert {"samples", "reconstructions"} <= event_tags(run.log_dir / "images")
    assert {"epoch_loss", "epoch_kl_loss"} <= event_tags(run.log_dir / "train")
    assert (run.samples_dir / "samples-epoch-0002.png").is_file()


def event_steps(folder: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    kind = "images" if tag in acc.Tags().get("images", []) else "tensors"
    return sorted(e.step for e in getattr(acc, "Images" if kind == "images" else "Tensors")(tag))


def test_scalars_and_image_grids_share_one_step_convention(vae_run):
    """Step n = n completed epochs, as in metrics.json, the checkpoint names and the PNG names."""
    logs = Run.open(vae_run).log_dir
    assert event_steps(logs / "train", "epoch_loss") == [1, 2]
    assert event_steps(logs / "validation", "epoch_loss") == [1, 2]
    assert event_steps(logs / "images", "samples") == [1, 2]


@pytest.mark.one_backend
def test_samples_keep_every_tenth_epoch_and_the_last(tmp_path):
    from kgen.callbacks import ImageGrids
    from kgen.models import AE

    model = AE((8, 8, 1), hidden=4, latent_dim=2)
    grids = ImageGrids(tmp_path / "logs", tmp_path / "samples", inputs=np.zeros((4, 8, 8, 1), "float32"), keep_every=3)
    grids.set_model(model)
    for epoch in range(8):
        grids.on_epoch_end(epoch)
    kept = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert kept == [f"reconstructions-epoch-{n:04d}.png" for n in (3, 6, 8)]


@pytest.mark.one_backend
def test_a_long_run_draws_its_grids_every_few_epochs_and_after_the_last(tmp_path):
    from kgen.callbacks import GRIDS_PER_RUN, ImageGrids, grid_interval
    from kgen.models import AE

    assert grid_interval(1) == grid_interval(GRIDS_PER_RUN) == 1
    assert grid_interval(GRIDS_PER_RUN + 1) == 2 and grid_interval(84) == 3  # 84 epochs: 28 drawings
    model = AE((8, 8, 1), hidden=4, latent_dim=2)
    grids = ImageGrids(tmp_path / "logs", tmp_path / "samples", inputs=np.zeros((4, 8, 8, 1), "float32"), keep_every=2,
                       every=3)
    grids.set_model(model)
    grids.set_params({"epochs": 14})
    for epoch in range(14):
        grids.on_epoch_end(epoch)
    assert event_steps(tmp_path / "logs", "reconstructions") == [3, 6, 9, 12, 14]  # completed epochs
    kept = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert kept == [f"reconstructions-epoch-{n:04d}.png" for n in (6, 12, 14)]  # every 2nd drawing and the last


def test_sample_writes_a_grid_and_is_seeded(vae_run, tmp_path):
    for name in ("a.png", "b.png"):
        result = invoke("sample", vae_run, "--n", 9, "--out", tmp_path / name, "--seed", 7)
        assert result.exit_code == 0, result.output
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("a.png", "b.png"))
    assert a.shape == (3 * 29 + 1, 3 * 29 + 1) and np.array_equal(a, b)


def test_config_file_reproduces_a_run(vae_run, tmp_path):
    result = invoke("train", "--config", vae_run / "config.json", "--run-dir", tmp_path / "again", "--epochs", 1)
    assert result.exit_code == 0, result.output
    again = Run.open(tmp_path / "again").config()
    original = Run.open(vae_run).config()
    assert again["epochs"] == 1
    # The config holds the precision "auto" resolved to: the copy asks for it by name.
    assert original["precision_reason"].startswith("auto: ") and again["precision_reason"] == "--precision"
    differing = ("epochs", "precision_reason")
    assert {k: v for k, v in again.items() if k not in differing} == {k: v for k, v in original.items() if k not in differing}


@pytest.mark.one_backend
def test_existing_run_is_never_overwritten(vae_run):
    stamp = (vae_run / "model.keras").stat().st_mtime_ns
    result = invoke("train", "vae", "--run-dir", vae_run, "--epochs", 1)
    assert result.exit_code == 2 and "already exists" in result.output
    assert (vae_run / "model.keras").stat().st_mtime_ns == stamp


BAD_INPUTS = [
    (["train", "nosuchmodel"], "unknown model 'nosuchmodel'; choose one of: ae, "),  # by family, then name
    (["train", "vae", "--dataset", "nosuchdata"], "unknown dataset 'nosuchdata'"),
    (["train", "vae", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["train", "vae", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "vae", "--steps-per-execution", "0"], "--steps-per-execution must be >= 1"),
    (["train", "vae", "--lr-schedule", "step"], "--lr-schedule must be one of constant, cosine"),
    (["train", "vae", "--latent-dim", "-2"], "--latent-dim must be >= 1"),
    (["train", "vae", "--decoder", "poisson"], "--decoder must be one of bernoulli, gaussian"),
    (["train", "vae", "--wings", "2"], "model 'vae' has no option --wings"),
    (["train", "--resume", "/no/such/run"], "no run at /no/such/run"),
    (["sample", "/no/such/run"], "no run at /no/such/run"),
]


@pytest.mark.one_backend
@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("kgen: error:") and message in lines[0]


@pytest.mark.one_backend
def test_corrupt_run_and_a_model_that_cannot_sample(tmp_path, idx_folder):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    result = invoke("sample", tmp_path / "broken")
    assert result.exit_code == 2 and "corrupt" in result.output
    result = invoke("train", "ae", "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 1,
                    "--batch-size", 8, "--run-dir", tmp_path / "ae")
    assert result.exit_code == 0, result.output
    result = invoke("sample", tmp_path / "ae", "--out", tmp_path / "s.png")
    assert result.exit_code == 2 and "cannot sample" in result.output


@pytest.mark.one_backend
def test_real_subprocess_bad_input_has_no_traceback():
    result = run_kgen("train", "nosuchmodel")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "kgen: error: unknown model" in result.stderr
    result = run_kgen("train", "vae", "--epochs", "many")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--epochs" in result.stderr


@pytest.mark.one_backend
def test_resume_after_kill_9_keeps_optimizer_state(idx_folder, tmp_path):
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("kgen")), "train", "ae", "--dataset", str(idx_folder), "--epochs", "500",
         "--steps-per-epoch", "2", "--batch-size", "16", "--run-dir", str(run_dir)],
        env={**os.environ, "KERAS_BACKEND": BACKEND}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    latest = run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["epoch"] >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    completed = Run.open(run_dir).latest_checkpoint()[0]
    assert 2 <= completed < 500

    result = run_kgen("train", "--resume", str(run_dir), "--epochs", str(completed + 2))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {run_dir} after epoch {completed}" in result.stderr

    run = Run.open(run_dir)
    assert run.latest_checkpoint()[0] == completed + 2
    assert [h["epoch"] for h in run.metrics()["history"]] == list(range(1, completed + 3))
    config = TrainConfig.from_dict(run.config())
    model = build_model(config, run.config()["input_shape"], run.config()["data_range"])
    model.load_weights(run.latest_checkpoint()[1])
    # The optimizer kept counting from the killed run: 2 steps per epoch, all epochs.
    iterations = keras.ops.convert_to_numpy(model.phase_optimizers["autoencoder"].iterations)
    assert int(iterations) == 2 * (completed + 2)


class PoisonWeights(keras.callbacks.Callback):
    """Turns one weight into NaN when epoch 2 starts: the loss must become NaN."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.encoder.trainable_variables[0]
            kernel.assign(keras.ops.full(kernel.shape, float("nan")))


@pytest.mark.one_backend
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(idx_folder, tmp_path):
    config = TrainConfig("vae", dataset=str(idx_folder), epochs=4, steps_per_epoch=2, batch_size=16)
    with pytest.raises(TrainingDiverged, match=r"NaN/inf in epoch 2.*last good checkpoint \(epoch 1\)"):
        train(config, run_dir=str(tmp_path / "nan"), verbose=0, extra_callbacks=[PoisonWeights()])
    run = Run.open(tmp_path / "nan")
    assert run.latest_checkpoint()[0] == 1
    weights = [keras.ops.convert_to_numpy(w) for w in load_model(run.path).weights]
    assert all(np.isfinite(w).all() for w in weights)


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir() and not os.environ.get("CI"), reason="apt-get install dataset-fashion-mnist")
def test_end_to_end_on_real_fashion_mnist(tmp_path):
    config = TrainConfig("vae", dataset="fashion_mnist", epochs=2, steps_per_epoch=40, validation_steps=10,
                         batch_size=128, model_options={"latent_dim": 8})
    run = train(config, run_dir=str(tmp_path / "fashion"), verbose=0)
    assert "fashion-mnist" in run.config()["data_source"]
    history = run.metrics()["history"]
    # Fashion-MNIST starts near 784*ln2 = 543 nats; a real model gets well below that quickly.
    assert history[-1]["val_loss"] < 330
    assert history[-1]["loss"] < history[0]["loss"]


# -- the AE family: train, evaluate, encode ------------------------------------------
@pytest.fixture(scope="module")
def denoising_run(idx_folder, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "dae-run"
    result = invoke("train", "denoising_ae", "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 3,
                    "--batch-size", 16, "--run-dir", run_dir, "--noise", "masking", "--noise-level", "0.4")
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.mark.one_backend
def test_family_is_listed():
    listing = invoke("list").output
    for name in ("stacked_ae", "sparse_ae", "denoising_ae", "contractive_ae", "linear_ae", "rbm"):
        assert f"{name}:" in listing


def test_training_logs_codes_and_denoising_grids(denoising_run):
    tags = event_tags(denoising_run / "logs" / "images")
    assert {"codes", "denoising", "reconstructions"} <= tags
    assert (denoising_run / "samples" / "codes-epoch-0001.png").is_file()


def test_evaluate_prints_a_table_records_it_and_writes_scores(denoising_run, tmp_path):
    scores = tmp_path / "scores.csv"
    result = invoke("evaluate", denoising_run, "--scores", scores)
    assert result.exit_code == 0, result.output
    for name in ("reconstruction_mse", "reconstruction_bce", "reconstruction_psnr", "psnr_noisy", "psnr_denoised"):
        assert name in result.output
    recorded = Run.open(denoising_run).evaluation("test")
    rows = scores.read_text().splitlines()
    assert rows[0] == "index,label,mse,bce,psnr,anomaly_score" and len(rows) == 41  # 40 test images
    mse = np.array([float(r.split(",")[2]) for r in rows[1:]])
    assert recorded["reconstruction_mse"] == pytest.approx(mse.mean(), rel=1e-4)
    assert recorded["psnr_gain"] == pytest.approx(recorded["psnr_denoised"] - recorded["psnr_noisy"])
    again = invoke("evaluate", denoising_run, "--scores", scores)  # never overwrites
    assert again.exit_code == 2 and "exists" in again.output


def test_encode_writes_codes_and_labels(denoising_run, tmp_path):
    out = tmp_path / "codes.npz"
    result = invoke("encode", denoising_run, "--split", "train", "--out", out)
    assert result.exit_code == 0, result.output
    saved = np.load(out)
    assert saved["codes"].shape == (160, 32) and saved["labels"].shape == (160,)
    model = load_model(denoising_run)
    first = keras.ops.convert_to_numpy(model.encode(_first_train_images(denoising_run)))
    np.testing.assert_allclose(saved["codes"][:4], first, atol=1e-5)
    assert invoke("encode", denoising_run, "--out", out).exit_code == 2  # exists, no --force


def _first_train_images(run_dir):
    from kgen.evaluate import split_arrays

    return split_arrays(Run.open(run_dir), "train", limit=4)[0]


@pytest.mark.parametrize("args,message", [
    (["train", "ae", "--latent-dim", "1000"], "can learn the identity"),
    (["train", "denoising_ae", "--noise", "speckle"], "--noise must be one of"),
    (["train", "sparse_ae", "--rho", "2"], "--rho must be strictly between 0 and 1"),
    (["train", "contractive_ae", "--weight", "-1"], "--weight must be >= 0"),
    (["train", "gan", "--g-loss", "wasserstein"], "--g-loss must be one of non-saturating, minimax"),
    (["train", "gan", "--d-steps", "0"], "--d-steps must be >= 1"),
    (["train", "wgan", "--n-critic", "0"], "--n-critic must be >= 1"),
    (["train", "ae", "--eval-every", "1"], "model 'ae' cannot sample"),
    (["train", "dcgan", "--eval-every", "0"], "--eval-every must be >= 1"),
])
@pytest.mark.one_backend
def test_family_bad_options_exit_2(idx_folder, tmp_path, args, message):
    result = invoke(*args, "--dataset", idx_folder, "--run-dir", tmp_path / "r", "--epochs", 1)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.one_backend
def test_evaluate_bad_split_and_missing_run(denoising_run, tmp_path):
    assert invoke("evaluate", denoising_run, "--split", "validation").exit_code == 2
    result = invoke("evaluate", tmp_path / "nope")
    assert result.exit_code == 2 and "kgen: error:" in result.output


def test_default_epochs_train_the_models_default_number_of_steps():
    from kgen.train import FALLBACK_EPOCHS, default_epochs

    # ceil(steps / batches per epoch): 4,500 digits at batch 128 are 36 batches, 60,000 images 469
    assert default_epochs(3000, 36) == 84 and default_epochs(3000, 469) == 7
    assert default_epochs(3000, 3000) == 1 and default_epochs(10, 100) == 1
    assert default_epochs(3000, None) == FALLBACK_EPOCHS  # a pass of unknown length


def test_a_run_without_epochs_trains_the_default_steps_and_records_them(idx_folder, tmp_path, monkeypatch, capsys):
    from kgen.models import get_model_class

    monkeypatch.setattr(get_model_class("ae"), "default_steps", 25)  # 160 images at batch 16: 10 per pass
    config = TrainConfig("ae", dataset=str(idx_folder), batch_size=16, model_options={"hidden": 8, "latent_dim": 2})
    assert config.epochs is None
    run = train(config, run_dir=str(tmp_path / "auto"), verbose=0)
    assert run.config()["epochs"] == 3  # ceil(25 / 10)
    assert [h["epoch"] for h in run.metrics()["history"]] == [1, 2, 3]
    assert "--epochs not given: 3 epoch(s) of 10 batches" in capsys.readouterr().err
    resumed = train(None, resume=run.path, verbose=0)  # resuming keeps the run's own total
    assert resumed.config()["epochs"] == 3


def test_cosine_schedule_decays_from_the_rate_to_one_percent():
    from kgen.train import learning_rate

    config = TrainConfig(model="ae", epochs=2, batch_size=10, learning_rate=0.1, lr_schedule="cosine")
    schedule = learning_rate(config, num_train=95)  # ceil(95 / 10) = 10 steps per epoch, 20 in all
    # Loshchilov & Hutter: lr * (alpha + (1 - alpha) * (1 + cos(pi * t / T)) / 2), alpha = 0.01
    for step, expected in [(0, 0.1), (10, 0.1 * (0.01 + 0.99 * 0.5)), (20, 0.001)]:
        assert float(keras.ops.convert_to_numpy(schedule(step))) == pytest.approx(expected, rel=1e-5)
    assert learning_rate(TrainConfig(model="ae", learning_rate=0.1), num_train=95) == 0.1
    model = build_model(config, (28, 28, 1), "unit", num_train=95)
    optimizer = model.phase_optimizers["autoencoder"]
    assert isinstance(optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)
