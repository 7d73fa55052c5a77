"""`kgen evaluate` judges every family with its field's figures (issue 17): the VAE's -ELBO and IWAE
bound, the RBM's AIS likelihood, a generator's precision/recall and real-vs-real floor at its sample
size, InfoGAN's code accuracy, the AAE's Parzen log-likelihood; and it records the data it judged,
keeping one record per data set and split (`--dataset`).

Tiny runs (one training step) on the session's IDX folder, evaluated through the CLI with a small K,
a few AIS temperatures and 64 samples: the numbers are meaningless as quality, but their names, their
finiteness and the relations between them are not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import digit_like_images, invoke
from kgen.evaluate import split_arrays
from kgen.files import sha256_of_arrays
from kgen.runs import Run, load_model

# family -> (model, options of a tiny network). All runs share one folder, so the generators find
# the classifier beside them.
FAMILIES = {
    "classifier": ("classifier", ["--arch", "dense", "--width", "8"]),
    "vae": ("vae", ["--hidden", "16", "--latent-dim", "2"]),
    "rbm": ("rbm", ["--hidden", "16", "--sample-steps", "5"]),
    "infogan": ("infogan", ["--arch", "dense", "--width", "8", "--latent-dim", "4", "--continuous-codes", "1"]),
    "aae": ("aae", ["--hidden", "16", "--disc-width", "8"]),
    "ae": ("ae", ["--hidden", "16", "--latent-dim", "4"]),
}
FAST = ["--importance-samples", 20, "--ais-temperatures", 30, "--ais-runs", 10, "--n", 64]
PIXELS = 28 * 28
TEST_EXAMPLES = 40  # the IDX folder's test split (conftest.idx_folder)


@pytest.fixture(scope="module")
def runs(idx_folder, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fidelity")
    for family, (model, options) in FAMILIES.items():
        result = invoke("train", model, "--dataset", idx_folder, "--epochs", 1, "--steps-per-epoch", 1,
                        "--validation-steps", 1, "--batch-size", 16, "--run-dir", root / family, *options)
        assert result.exit_code == 0, result.output
    return {family: root / family for family in FAMILIES}


def evaluate(run: Path, *args) -> dict:
    """`kgen evaluate RUN FAST... ARGS`; the record it added (the newest one)."""
    result = invoke("evaluate", run, *FAST, *args)
    assert result.exit_code == 0, result.output
    record = Run.open(run).evaluations()[-1]
    data = record["data"]
    assert (f"data: {data['dataset']} ({data['source']}), {data['split']} split, {data['examples']} examples, "
            f"sha256 {data['sha256'][:16]}\n") in result.output
    for name in record["metrics"]:
        assert name in result.output
    return record


def assert_finite(metrics: dict, *names: str) -> None:
    for name in names:
        assert name in metrics, name
        assert math.isfinite(metrics[name]), (name, metrics[name])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kgen: error: "), result.output
    return lines[0]


def write_npz(path: Path, size: int = 28, seed: int = 2) -> Path:
    x, y = digit_like_images(60, size, seed=seed)
    x_test, y_test = digit_like_images(30, size, seed=seed + 1)
    np.savez(path, x=x, y=y.astype(np.int64), x_test=x_test, y_test=y_test.astype(np.int64))
    return path


# -- each family's figures ---------------------------------------------------------------------
def test_vae_reports_the_elbo_and_the_iwae_bound_in_nats_and_bits(runs):
    record = evaluate(runs["vae"])
    m = record["metrics"]
    assert_finite(m, "negative_elbo", "negative_elbo_se", "iwae_nll", "iwae_nll_se", "iwae_bits_per_dim",
                  "negative_elbo_bits_per_dim", "iwae_effective_sample_size", "reconstruction_mse")
    # Both bounds come from the same K draws, and log-mean-exp >= mean of logs (Jensen): L_K >= ELBO
    # per example, so -L_K <= -ELBO in the mean, not only up to the standard error.
    assert m["iwae_nll"] <= m["negative_elbo"]
    assert m["iwae_nll_se"] >= 0 and m["negative_elbo_se"] >= 0
    assert m["iwae_bits_per_dim"] == pytest.approx(m["iwae_nll"] / (PIXELS * math.log(2)), rel=1e-12)
    assert m["negative_elbo_bits_per_dim"] == pytest.approx(m["negative_elbo"] / (PIXELS * math.log(2)), rel=1e-12)
    assert 1.0 <= m["iwae_effective_sample_size"] <= 20.0
    assert m["importance_samples"] == 20 and m["likelihood_examples"] == TEST_EXAMPLES
    # The data the number is on, stated: the Bernoulli decoder's fixed stochastic binarization.
    assert "stochastically binarized" in m["likelihood_data"] and "default_rng(0)" in m["likelihood_data"]
    # -log p(x) of 784 binary pixels from an untrained model: positive, and near 784 ln 2 at most a few times over.
    assert 0 < m["iwae_nll"] < 10 * PIXELS * math.log(2)


def test_the_help_says_what_k_the_papers_use():
    text = invoke("evaluate", "--help").output
    assert "--importance-samples" in text and "5000" in text and "--ais-temperatures" in text and "--dataset" in text


def test_rbm_reports_the_ais_likelihood_and_its_error(runs):
    from kgen.metrics.ais import rbm_log_likelihood
    from kgen.metrics.likelihood import binarize

    m = evaluate(runs["rbm"])["metrics"]
    assert_finite(m, "rbm_nll", "rbm_nll_se", "rbm_bits_per_dim", "rbm_log_z", "rbm_log_z_se", "rbm_nll_high",
                  "pseudo_log_likelihood")
    assert m["rbm_nll_se"] >= 0 and m["rbm_log_z_se"] >= 0
    assert m["ais_temperatures"] == 30 and m["ais_runs"] == 10
    assert m["rbm_bits_per_dim"] == pytest.approx(m["rbm_nll"] / (PIXELS * math.log(2)), rel=1e-12)
    assert m["rbm_nll_low"] <= m["rbm_nll"] <= m["rbm_nll_high"]
    # The wiring: -mean log p(v) = mean F(v) + log Z over the test images binarized with --seed 0.
    run = Run.open(runs["rbm"])
    v = binarize(split_arrays(run, "test")[0], 0).reshape(TEST_EXAMPLES, -1)
    expected = -np.mean(rbm_log_likelihood(load_model(run), v, m["rbm_log_z"]))
    assert m["rbm_nll"] == pytest.approx(expected, rel=1e-5)


def test_generator_gets_precision_recall_the_matched_floor_and_code_accuracy(runs):
    from kgen.metrics import classifier_outputs, fid, rescale

    record = evaluate(runs["infogan"])
    m = record["metrics"]
    assert_finite(m, "fid", "kid", "classifier_score", "precision", "recall", "fid_real_floor", "kid_real_floor",
                  "classifier_score_real", "code_accuracy", "generated_code_accuracy")
    assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0
    assert m["precision_recall_k"] == 3 and m["precision_recall_examples"] == TEST_EXAMPLES  # min(40, --n 64)
    assert "fid_real_floor_halves" not in m  # the two-halves floor is gone, not renamed
    # The floor: --n 64 training images (seeded permutation) against the whole test split, as the samples are.
    assert m["real_floor_samples"] == 64 and m["samples"] == 64
    run = Run.open(runs["infogan"])
    judge = load_model(Run.open(m["classifier"]))
    train_x, test_x = split_arrays(run, "train")[0], split_arrays(run, "test")[0]
    chosen = train_x[np.random.default_rng(0).permutation(len(train_x))[:64]]
    to_judge = lambda x: rescale(x, run.config()["data_range"], judge.hparams["data_range"])
    features = [classifier_outputs(judge, to_judge(x))[0] for x in (chosen, test_x)]
    assert m["fid_real_floor"] == pytest.approx(fid(*features), rel=1e-6)
    # InfoGAN's categorical code: 10 values matched to 10 classes, so at least a tenth right.
    assert 0.1 <= m["code_accuracy"] <= 1.0 and m["code_error"] == pytest.approx(1 - m["code_accuracy"])
    assert len(m["code_to_class"].split(",")) == 10 and m["code_examples"] == TEST_EXAMPLES
    assert m["generated_code_examples"] == 70  # ceil(64 / 10) per code value


def test_aae_gets_the_parzen_likelihood_beside_the_prior_figures(runs):
    m = evaluate(runs["aae"])["metrics"]
    assert_finite(m, "parzen_log_likelihood", "parzen_log_likelihood_se", "parzen_sigma", "code_prior_mmd2",
                  "reconstruction_mse")
    assert m["parzen_log_likelihood_se"] >= 0 and 0.1 <= m["parzen_sigma"] <= 1.0
    # 64 kernels, the window chosen on half of the 160 training images, scored on the 40 test images.
    assert (m["parzen_samples"], m["parzen_validation_examples"], m["parzen_test_examples"]) == (64, 80, 40)
    assert Path(m["code_plot"]).is_file()
    # What real images score under the same protocol: 64 of the other 80 training images as the kernels,
    # never the 80 that chose the window (with them among the kernels, the window would shrink to the grid's
    # smallest value and the figure would measure memorisation).
    from kgen.metrics import parzen_evaluate, rescale
    from kgen.sampling import sample_batches

    run = Run.open(runs["aae"])
    unit = lambda x: rescale(x, run.config()["data_range"], "unit")
    train_x, test_x = (unit(split_arrays(run, split)[0]) for split in ("train", "test"))
    order = np.random.default_rng(0).permutation(len(train_x))
    expected = parzen_evaluate(train_x[order[80:144]], train_x[order[:80]], test_x)
    assert m["parzen_real_samples"] == 64 and "parzen_log_likelihood_same_n" not in m
    assert m["parzen_real_log_likelihood"] == pytest.approx(expected["parzen_log_likelihood"], rel=1e-9)
    assert m["parzen_real_sigma"] == expected["parzen_sigma"]
    # More samples than real images left: the model is also scored with as many kernels as the real images.
    more = evaluate(runs["aae"], "--n", 100)["metrics"]
    assert more["parzen_real_samples"] == 80 and more["parzen_samples"] == 100
    samples = unit(sample_batches(load_model(run), 100, 0))[:80]
    assert more["parzen_log_likelihood_same_n"] == pytest.approx(
        parzen_evaluate(samples, train_x[order[:80]], test_x)["parzen_log_likelihood"], rel=1e-6)


def test_a_classifier_judges_an_autoencoders_reconstructions(runs, tmp_path):
    from kgen.metrics import rescale
    from kgen.outputs import batched, reconstructions

    m = evaluate(runs["ae"], "--classifier", runs["classifier"])["metrics"]
    assert "fid" not in m and "reconstruction_mse" in m  # an autoencoder: no samples to judge
    # On the images, the judge scores what its own evaluation scores.
    assert m["judge_accuracy"] == evaluate(runs["classifier"])["metrics"]["accuracy"]
    run, judge = Run.open(runs["ae"]), load_model(runs["classifier"])
    x, labels = split_arrays(run, "test")
    rebuilt = reconstructions(load_model(run), x, labels)
    predicted = batched(judge.predict_proba, rescale(rebuilt, "unit", judge.hparams["data_range"])).argmax(axis=1)
    assert m["reconstruction_judge_accuracy"] == pytest.approx(np.mean(predicted == labels))
    # Data without labels: nothing to judge the reconstructions by; one line, no record.
    x_unlabelled, _ = digit_like_images(30, 28, seed=5)
    np.savez(tmp_path / "unlabelled.npz", x=x_unlabelled)
    before = Run.open(runs["ae"]).evaluations()
    result = invoke("evaluate", runs["ae"], "--classifier", runs["classifier"], "--dataset", tmp_path / "unlabelled.npz")
    assert "has no labels" in one_line_error(result)
    assert Run.open(runs["ae"]).evaluations() == before


# -- the data of a record, and one record per data set -------------------------------------------
def test_other_data_add_records_and_never_replace_one(runs, tmp_path):
    run_dir = runs["vae"]
    run = Run.open(run_dir)
    own = evaluate(run_dir)
    x, labels = split_arrays(run, "test")
    assert own["data"] | {"source": None} == {
        "dataset": str(Path(run.config()["dataset"]).resolve()), "source": None, "split": "test",
        "examples": TEST_EXAMPLES, "shape": [28, 28, 1], "data_range": "unit", "limit": None,
        "sha256": sha256_of_arrays(x, labels)}
    before = {json.dumps(r, sort_keys=True) for r in run.evaluations()}

    other = write_npz(tmp_path / "other.npz")
    result = invoke("evaluate", run_dir, "--dataset", other, *FAST)
    assert result.exit_code == 0, result.output
    assert f"data: {other.resolve()} (npz file" in result.output
    records = run.evaluations()
    assert before <= {json.dumps(r, sort_keys=True) for r in records}  # every earlier record intact
    added = records[-1]
    assert added["data"]["dataset"] == str(other.resolve()) and added["data"]["examples"] == 30
    assert added["data"]["sha256"] != own["data"]["sha256"]  # other content, other hash
    assert_finite(added["metrics"], "iwae_nll", "negative_elbo")
    assert run.evaluation("test", dataset=str(other))["iwae_nll"] == added["metrics"]["iwae_nll"]
    assert run.evaluation("test") == own["metrics"]  # the run's own data: still its own record

    # The same data and split again: that record is replaced, not duplicated.
    evaluate(run_dir)
    assert len(run.evaluations()) == len(records)
    # Other examples of the same data set (--limit, --split): new records, new hashes.
    limited = evaluate(run_dir, "--limit", 10)
    train = evaluate(run_dir, "--split", "train")
    assert len(run.evaluations()) == len(records) + 2
    hashes = {own["data"]["sha256"], added["data"]["sha256"], limited["data"]["sha256"], train["data"]["sha256"]}
    assert len(hashes) == 4 and limited["data"]["examples"] == 10 and train["data"]["examples"] == 160


def test_bad_data_is_one_line_and_writes_nothing(runs, tmp_path):
    run_dir = runs["aae"]  # evaluating an AAE writes a plot too: nothing may be written
    evaluate(run_dir)  # there is something to keep
    metrics = (run_dir / "metrics.json").read_bytes()
    samples = sorted(p.name for p in (run_dir / "samples").iterdir())
    line = one_line_error(invoke("evaluate", run_dir, "--dataset", tmp_path / "missing" / "data.npz"))
    assert "no such file or folder" in line
    small = write_npz(tmp_path / "small.npz", size=14)
    line = one_line_error(invoke("evaluate", run_dir, "--dataset", small, *FAST))
    assert "(14, 14, 1)" in line and "(28, 28, 1)" in line
    assert (run_dir / "metrics.json").read_bytes() == metrics
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == samples


def test_the_content_hash_covers_values_dtype_and_shape():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    labels = np.array([0, 1, 2])
    digest = sha256_of_arrays(x, labels)
    assert digest == sha256_of_arrays(x.copy(), labels.copy()) and len(digest) == 64
    changed = x.copy()
    changed[2, 3] += 1
    assert sha256_of_arrays(changed, labels) != digest
    assert sha256_of_arrays(x.astype(np.float64), labels) != digest
    assert sha256_of_arrays(x.reshape(4, 3), labels) != digest
    assert sha256_of_arrays(x, labels[::-1].copy()) != digest


def test_a_record_replaces_only_the_record_of_the_same_data(tmp_path):
    run = Run(tmp_path)

    def record(dataset, split, digest, value):
        return {"data": {"dataset": dataset, "split": split, "sha256": digest}, "metrics": {"v": value}}

    run.record_evaluation(record("mnist", "test", "a", 1.0))
    run.record_evaluation(record("mnist", "train", "b", 2.0))
    run.record_evaluation(record("/data/other", "test", "c", 3.0))
    run.record_evaluation(record("mnist", "test", "a", 4.0))  # the same data: replaced
    assert [(r["data"]["sha256"], r["metrics"]["v"]) for r in run.evaluations()] == [("b", 2.0), ("c", 3.0), ("a", 4.0)]
    assert run.evaluation("test", dataset="mnist") == {"v": 4.0}
    with pytest.raises(ValueError, match="no evaluation of the train split of /data/other"):
        run.evaluation("train", dataset="/data/other")
