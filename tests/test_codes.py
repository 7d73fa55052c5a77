"""InfoGAN's categorical code as a classifier (kgen.metrics.codes): hand cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from kgen.metrics.codes import code_latents, generated_code_accuracy, matched_accuracy, q_code_accuracy


def test_matched_accuracy_on_hand_cases():
    # A relabelling is perfect: code 2 is class 0, code 0 class 1, code 1 class 2.
    accuracy, mapping = matched_accuracy([2, 2, 0, 0, 1, 1], [0, 0, 1, 1, 2, 2])
    assert accuracy == 1.0 and mapping.tolist() == [1, 2, 0]
    # 10 classes x 10 examples, codes a permutation of the labels, 7 examples given a wrong code: 93%.
    labels = np.repeat(np.arange(10), 10)
    permutation = np.random.default_rng(0).permutation(10)
    codes = permutation[labels]
    codes[[0, 11, 22, 33, 44, 55, 66]] = permutation[(labels[[0, 11, 22, 33, 44, 55, 66]] + 1) % 10]
    accuracy, mapping = matched_accuracy(codes, labels)
    assert accuracy == pytest.approx(0.93) and np.array_equal(mapping[permutation], np.arange(10))
    # One-to-one: three codes, two classes; the third code cannot also be class 0 (a majority vote would say 5/6).
    accuracy, mapping = matched_accuracy([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 0])
    assert accuracy == pytest.approx(4 / 6) and mapping.tolist() == [0, 1, -1]
    with pytest.raises(ValueError):
        matched_accuracy([0, 1], [0])


class StubInfoGAN:
    """Q head reads the code off the image: features(x) = x, Q logits = x @ M, image = one-hot(code)."""

    code_sizes = (2, 4, 1)
    hparams = {"data_range": "symmetric"}

    def __init__(self, drawn_class):
        self.drawn_class = np.asarray(drawn_class)  # the class G draws for each code value

    def features(self, x):
        return x

    def q_head(self, features):
        # logits of the 4 codes, then a continuous code's mean and log-std
        return ops.matmul(features, ops.convert_to_tensor(np.eye(4, 6, dtype="float32")))

    def code_logits(self, x):
        """The categorical code's logits, as InfoGAN.code_logits: Q on the features, the first 4 outputs."""
        return self.q_head(self.features(ops.convert_to_tensor(x, "float32")))[:, :4]

    def generate(self, latent):
        code = ops.argmax(latent[:, 2:6], axis=1)
        drawn = ops.take(ops.convert_to_tensor(self.drawn_class.astype("int32")), code)
        return 2.0 * ops.one_hot(drawn, 4) - 1.0  # in [-1, 1]


class StubClassifier:
    """Scores sum_j M_ij x_j^2: right only on images rescaled to [0, 1] (on [-1, 1] one-hots every x_j^2 is 1)."""

    hparams = {"data_range": "unit"}
    num_classes = 4

    def __init__(self, merge=None):
        self.mixing = np.eye(4, dtype="float32")
        if merge:  # (a, b): predicts class b for images of class a
            a, b = merge
            self.mixing[a] = np.eye(4)[b]

    def predict_proba(self, x):
        return ops.matmul(ops.square(x), ops.convert_to_tensor(self.mixing))


def test_q_code_accuracy_reads_codes_from_the_q_head():
    labels = np.repeat(np.arange(4), 5)
    permutation = np.array([3, 0, 2, 1])
    x = np.eye(4, dtype="float32")[permutation[labels]]  # class c carries code permutation[c]
    result = q_code_accuracy(StubInfoGAN(np.arange(4)), x, labels)
    assert result["code_accuracy"] == 1.0 and result["code_error"] == 0.0 and result["code_examples"] == 20
    assert np.array_equal(np.array(result["code_to_class"].split(","), int)[permutation], np.arange(4))
    x[:3] = np.eye(4, dtype="float32")[permutation[1]]  # three class-0 images carry class 1's code
    assert q_code_accuracy(StubInfoGAN(np.arange(4)), x, labels)["code_accuracy"] == pytest.approx(17 / 20)


def test_generated_code_accuracy_classifies_each_code_value():
    drawn = np.array([2, 0, 3, 1])  # code k draws class drawn[k]
    model = StubInfoGAN(drawn)
    result = generated_code_accuracy(model, StubClassifier(), per_code=30, seed=0, batch_size=7)
    assert result["generated_code_accuracy"] == 1.0 and result["generated_code_error"] == 0.0
    assert result["generated_code_to_class"] == "2,0,3,1" and result["generated_code_examples"] == 120
    # The classifier confuses class 3 with class 2: codes 0 and 2 both give class 2, one of them is wrong.
    assert generated_code_accuracy(model, StubClassifier(merge=(3, 2)), per_code=30)["generated_code_accuracy"] == 0.75


def test_code_latents_follow_the_prior():
    latent = code_latents(StubInfoGAN(np.arange(4)), 2, 5000, np.random.default_rng(0))
    assert latent.shape == (5000, 7)
    assert np.array_equal(latent[:, 2:6], np.tile([0, 0, 1, 0], (5000, 1)))
    assert abs(latent[:, :2].mean()) < 0.05 and abs(latent[:, :2].std() - 1.0) < 0.05
    assert latent[:, 6].min() >= -1.0 and latent[:, 6].max() <= 1.0 and abs(latent[:, 6].std() - 3**-0.5) < 0.02


def test_on_real_infogan_and_classifier_networks():
    from kgen.models.classifier import Classifier
    from kgen.models.infogan import InfoGAN

    model = InfoGAN((8, 8, 1), arch="dense", width=16, latent_dim=4, categories=3, continuous_codes=1, seed=0)
    judge = Classifier((8, 8, 1), arch="dense", width=8, num_classes=3, seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (40, 8, 8, 1)).astype("float32")
    labels = np.arange(40) % 3
    result = q_code_accuracy(model, x, labels)
    assert 1 / 3 <= result["code_accuracy"] <= 1.0 and len(result["code_to_class"].split(",")) == 3
    result = generated_code_accuracy(model, judge, per_code=20, seed=1)
    assert 0.0 < result["generated_code_accuracy"] <= 1.0 and result["generated_code_examples"] == 60
    assert result == generated_code_accuracy(model, judge, per_code=20, seed=1)
