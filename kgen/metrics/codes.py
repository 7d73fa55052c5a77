"""Does InfoGAN's categorical code find the classes? (Chen et al. 2016, section 7.1: on MNIST the
10-way code c_1 "can be used as a classifier that achieves 5% error rate").

Codes are unsupervised, so code k need not mean class k: a code is matched to a class by the
one-to-one assignment that maximises the number of agreements (the Hungarian algorithm on the
code x class count matrix, scipy's ``linear_sum_assignment``), and

    accuracy = (sum over matched (code, class) pairs of their count) / (number of examples),

error = 1 - accuracy. With more codes than classes the unmatched codes count as errors (and
vice versa), so the figure is the accuracy of a one-to-one code -> class map.

Two ways to get the (code, class) pairs:
- ``q_code_accuracy``: real labelled images through the discriminator body and the Q head,
  code = argmax of Q's categorical logits (the paper's measurement);
- ``generated_code_accuracy``: ``per_code`` images generated with each code value (noise and
  continuous codes from their priors), class = a kgen classifier's prediction: does the code
  control the class of what G draws?
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from kgen.metrics.compiled import compiled_batches
from kgen.metrics.report import rescale


def matched_accuracy(codes: np.ndarray, labels: np.ndarray, num_codes: int | None = None,
                     num_classes: int | None = None) -> tuple[float, np.ndarray]:
    """(accuracy under the best one-to-one code -> class map, that map: ``mapping[code]`` = class, -1
    for a code left unmatched)."""
    codes, labels = np.asarray(codes, np.int64).reshape(-1), np.asarray(labels, np.int64).reshape(-1)
    if len(codes) != len(labels) or not len(codes):
        raise ValueError(f"need as many codes as labels (and some): {len(codes)} and {len(labels)}")
    num_codes = int(codes.max()) + 1 if num_codes is None else num_codes
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    counts = np.zeros((num_codes, num_classes), np.int64)
    np.add.at(counts, (codes, labels), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = np.full(num_codes, -1, np.int64)
    mapping[rows] = cols
    return float(counts[rows, cols].sum() / len(codes)), mapping


def _report(accuracy: float, mapping: np.ndarray, examples: int, prefix: str = "") -> dict:
    """The figures, numbers as floats and the map as text ("3,0,2,1": the class of code 0, 1, ...; -1 unmatched),
    as ``kgen.runs.Run.record`` stores them."""
    return {f"{prefix}code_accuracy": accuracy, f"{prefix}code_error": 1.0 - accuracy,
            f"{prefix}code_examples": float(examples), f"{prefix}code_to_class": ",".join(str(int(c)) for c in mapping)}


def q_logits(model, x):
    """The InfoGAN Q head's categorical logits for images x (keras.ops; ``model.code_logits``)."""
    return model.code_logits(x)


def q_codes(model, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """argmax of the InfoGAN Q head's categorical logits for images x (in the model's data range)."""
    return np.argmax(compiled_batches(model, q_logits, x, batch_size), axis=1)


def q_code_accuracy(model, x: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> dict:
    """Classification by the categorical code of real images (Chen et al. 2016, section 7.1).

    Returns ``code_accuracy``, ``code_error``, ``code_examples`` and ``code_to_class`` (the matched
    class of each code value, -1 if none, comma-separated)."""
    accuracy, mapping = matched_accuracy(q_codes(model, x), labels, model.code_sizes[1], num_classes)
    return _report(accuracy, mapping, len(x))


def code_latents(model, code: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n InfoGAN inputs [z | one-hot(code) | c_cont], z ~ N(0, I), c_cont ~ U(-1, 1) (the model's prior)."""
    noise, categories, continuous = model.code_sizes
    latent = np.zeros((n, noise + categories + continuous), np.float32)
    latent[:, :noise] = rng.standard_normal((n, noise))
    latent[:, noise + code] = 1.0
    latent[:, noise + categories :] = rng.uniform(-1.0, 1.0, (n, continuous))
    return latent


def generated_code_accuracy(model, classifier, per_code: int = 1000, seed: int = 0, batch_size: int = 500) -> dict:
    """Classify ``per_code`` samples of each categorical code value with a kgen classifier (its
    ``predict_proba``; images rescaled from the generator's data range to the classifier's) and match
    codes to predicted classes. Draws from ``np.random.default_rng(seed)``.

    Returns ``generated_code_accuracy``, ``generated_code_error``, ``generated_code_examples`` and
    ``generated_code_to_class`` (named apart from ``q_code_accuracy``'s figures, so both can be reported)."""
    rng = np.random.default_rng(seed)
    categories = model.code_sizes[1]
    latent = np.concatenate([code_latents(model, code, per_code, rng) for code in range(categories)])
    images = compiled_batches(model, lambda m, z: m.generate(z), latent, batch_size)
    images = rescale(images, model.hparams["data_range"], classifier.hparams["data_range"])
    predicted = np.argmax(compiled_batches(classifier, lambda c, x: c.predict_proba(x), images, batch_size), axis=1)
    codes = np.repeat(np.arange(categories), per_code)
    accuracy, mapping = matched_accuracy(codes, predicted, categories, getattr(classifier, "num_classes", None))
    return _report(accuracy, mapping, categories * per_code, prefix="generated_")


__all__ = ["code_latents", "generated_code_accuracy", "matched_accuracy", "q_code_accuracy", "q_codes", "q_logits"]
