"""The proof of the model contract: LSGAN and beta-TCVAE, each one file in kgen/models/ with no edit
elsewhere, checked in their math and end to end through train, sample, evaluate, tune and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from conftest import invoke, np_
from kgen.models import MODELS, Ability, can
from kgen.models.lsgan import LSGAN
from kgen.models.tcvae import TCVAE, kl_decomposition
from kgen.runs import load_model


def test_both_are_registered_with_their_declared_abilities():
    assert MODELS["lsgan"] is LSGAN and MODELS["tcvae"] is TCVAE
    assert can(LSGAN, Ability.SAMPLE, Ability.GENERATE) and not can(LSGAN, Ability.ENCODE)
    assert can(TCVAE, Ability.ENCODE, Ability.RECONSTRUCT, Ability.SAMPLE)
    from cli.main import model_help

    assert invoke("list").output.count("lsgan:") == 1 and "--dataset-size" in "\n".join(model_help(["train", "tcvae", "--help"]))


# -- beta-TCVAE: the minibatch-weighted sampling estimator -------------------------------------------
def decomposition(z, mean, log_var, n):
    return [float(np_(t)) for t in kl_decomposition(z.astype("float32"), mean.astype("float32"),
                                                    log_var.astype("float32"), n)]


def test_the_three_terms_add_up_to_the_one_sample_kl():
    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(64, 3)), rng.normal(scale=0.3, size=(64, 3))
    z = mean + np.exp(0.5 * log_var) * rng.normal(size=(64, 3))
    terms = decomposition(z, mean, log_var, 1000)
    kl = np.mean(norm.logpdf(z, mean, np.exp(0.5 * log_var)).sum(1) - norm.logpdf(z).sum(1))
    assert sum(terms) == pytest.approx(kl, abs=1e-4)


def test_one_factorised_posterior_has_no_information_nor_correlation_and_its_closed_form_kl():
    """A dataset of one example: q(z) = q(z|x) = N(mu, diag sigma^2), factorised, so the mutual
    information and the total correlation are 0 and the dimension-wise KL is the closed form."""
    rng = np.random.default_rng(1)
    mu, sigma, m = np.array([0.5, -1.0, 2.0]), np.array([0.3, 1.5, 0.8]), 2000
    mean, log_var = np.tile(mu, (m, 1)), np.tile(2 * np.log(sigma), (m, 1))
    z = mean + sigma * rng.normal(size=(m, 3))
    information, correlation, dimensions = decomposition(z, mean, log_var, 1)
    assert information == pytest.approx(0.0, abs=1e-4) and correlation == pytest.approx(0.0, abs=1e-4)
    per_example = norm.logpdf(z, mu, sigma).sum(1) - norm.logpdf(z).sum(1)
    closed_form = np.sum(np.log(1 / sigma) + (sigma**2 + mu**2) / 2 - 0.5)  # KL(N(mu, sigma^2) || N(0, 1))
    assert abs(dimensions - closed_form) < 4 * per_example.std() / np.sqrt(m)


def test_the_total_correlation_of_a_correlated_gaussian_aggregate():
    """Posterior means drawn from N(0, A), a common posterior variance s^2: the aggregate posterior of
    many examples is N(0, A + s^2 I), whose total correlation is 1/2 (sum log diag S - log det S).
    Minibatch-weighted sampling over the whole dataset (M = N) estimates it up to its constant shift
    (d - 1) log N."""
    rng = np.random.default_rng(2)
    n, d, rho, s2 = 1500, 2, 0.8, 0.25
    a = np.array([[1.0, rho], [rho, 1.0]])
    mean = rng.multivariate_normal(np.zeros(d), a, size=n)
    z = mean + np.sqrt(s2) * rng.normal(size=(n, d))
    _, correlation, _ = decomposition(z, mean, np.full((n, d), np.log(s2)), n)
    s = a + s2 * np.eye(d)
    closed_form = 0.5 * (np.log(np.diag(s)).sum() - np.log(np.linalg.det(s)))
    # Per example, from scipy independently: log q(z_i) - sum_k log q(z_ik) under the batch's own mixture
    # (weights 1/M); their spread gives the Monte-Carlo error of the mean.
    pairs = norm.logpdf(z[:, None, :], mean[None], np.sqrt(s2))
    per_example = logsumexp(pairs.sum(2), axis=1) - logsumexp(pairs, axis=1).sum(1) + (d - 1) * np.log(n)
    assert correlation == pytest.approx(np.mean(per_example) + (d - 1) * np.log(n), abs=1e-3)  # the shift
    assert abs(np.mean(per_example) - closed_form) < 4 * per_example.std() / np.sqrt(n) + 0.01


def test_beta_weights_the_total_correlation_only():
    x = np.random.default_rng(3).random((16, 28, 28, 1)).astype("float32")
    losses = {}
    for beta in (1.0, 5.0):
        model = TCVAE((28, 28, 1), seed=0, hidden=8, latent_dim=3, beta=beta, dataset_size=100)
        loss, metrics = model.reconstruction_loss(x, False)
        losses[beta] = (float(np_(loss)), {k: float(np_(v)) for k, v in metrics.items()})
    for beta, (loss, m) in losses.items():  # eq. 4 with alpha = gamma = 1
        weighted = m["reconstruction_loss"] + m["mutual_information"] + beta * m["total_correlation"] + m["dimension_kl"]
        assert loss == pytest.approx(weighted, rel=1e-5)
    with pytest.raises(ValueError, match="dataset-size"):
        TCVAE((28, 28, 1), hidden=8)


# -- LSGAN: the least-squares objectives -------------------------------------------------------------
@pytest.mark.parametrize("coding,targets", [("0-1", (0.0, 1.0, 1.0)), ("chi2", (-1.0, 1.0, 0.0))])
def test_the_least_squares_objectives(coding, targets):
    a, b, c = targets
    model = LSGAN((28, 28, 1), arch="dense", width=8, latent_dim=4, coding=coding)
    real, fake = np.array([b, b + 1.0], "float32"), np.array([a, a - 2.0], "float32")
    d_loss, metrics = model.discriminator_objective(real, fake)
    assert float(np_(d_loss)) == pytest.approx(0.5 * (1.0 / 2) + 0.5 * (4.0 / 2))  # 1/2 mean (D - target)^2
    assert float(np_(metrics["d_real"])) == pytest.approx(b + 0.5)
    assert float(np_(model.generator_objective(np.array([c, c + 3.0], "float32")))) == pytest.approx(0.5 * 9.0 / 2)


# -- end to end, with no edit anywhere else ----------------------------------------------------------
@pytest.fixture(scope="module")
def judge(idx_folder, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "classifier"
    result = invoke("train", "classifier", "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 2,
                    "--batch-size", 16, "--arch", "dense", "--width", 8, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


CASES = {"lsgan": ["--arch", "dense", "--width", "8", "--latent-dim", "4"],
         "tcvae": ["--hidden", "16", "--latent-dim", "3"]}


@pytest.mark.parametrize("model", list(CASES))
def test_train_sample_evaluate_tune_and_export_work_end_to_end(model, idx_folder, judge, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("train", model, "--dataset", idx_folder, "--epochs", 2, "--steps-per-epoch", 3, "--batch-size", 16,
                    "--run-dir", run_dir, *CASES[model])
    assert result.exit_code == 0, result.output
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert len(history) == 2 and all(np.isfinite(v) for h in history for v in h.values())
    if model == "tcvae":  # the dataset's size reached the estimator (Option.from_data)
        assert load_model(run_dir).hparams["dataset_size"] == 160  # the idx folder's training split
        assert {"total_correlation", "mutual_information", "dimension_kl"} <= set(history[0])
    assert invoke("sample", run_dir, "--n", 8, "--out", tmp_path / "s.png").exit_code == 0
    result = invoke("evaluate", run_dir, "--classifier", judge, "--n", 64)
    assert result.exit_code == 0, result.output
    assert "fid" in result.output and (model == "lsgan" or "reconstruction_mse" in result.output)
    result = invoke("tune", model, "--dataset", idx_folder, "--max-trials", 1, "--epochs", 1, "--steps-per-epoch", 2,
                    "--batch-size", 16, "--best-grids", 0, "--tuner-dir", tmp_path / "tune", "--eval-samples", 64,
                    *(["--classifier", judge] if model == "lsgan" else []), *CASES[model])  # lsgan's objective: fid
    assert result.exit_code == 0, result.output
    result = invoke("export", run_dir, "--out", tmp_path / "exports")
    assert result.exit_code == 0, result.output
    expected = "generate, sample" if model == "lsgan" else "reconstruct, encode, decode, generate, sample"
    assert f"signatures: {expected}" in result.output
