"""The phased training core on this backend: phases, optimizer state, input gradients."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers, ops

from kgen.backend import input_gradient
from kgen.models.base import Phase, PhasedModel


class TwoPhaseToy(PhasedModel):
    """Phase "a" updates net_a (3 times per batch), phase "b" updates net_b once.

    net_a holds BatchNorm statistics and phase "b" draws noise from the model's
    seed generator, so the JAX step must also carry non-trainable state.
    """

    model_name = "toy"
    metric_names = ("loss", "loss_b")

    def __init__(self, input_shape=(4,), **kwargs):
        super().__init__(input_shape, **kwargs)
        self.net_a = keras.Sequential([keras.Input(input_shape), layers.Dense(3), layers.BatchNormalization(), layers.Dense(1)])
        self.net_b = keras.Sequential([keras.Input(input_shape), layers.Dense(1)])
        self.built = True

    def call(self, x):
        return self.net_a(x) + self.net_b(x)

    def loss_a(self, data, training):
        x, y = data
        loss = ops.mean(ops.square(self.net_a(x, training=training)[:, 0] - y))
        return loss, {"loss": loss}

    def loss_b(self, data, training):
        x, y = data
        noise = keras.random.normal(ops.shape(y), seed=self.seed_generator) * 0.01
        loss = ops.mean(ops.square(self.net_b(x, training=training)[:, 0] - y + noise))
        return loss, {"loss_b": loss}

    def training_phases(self):
        return [
            Phase("a", self.loss_a, self.net_a.trainable_variables, "opt_a", repeats=3),
            Phase("b", self.loss_b, self.net_b.trainable_variables, "opt_b"),
        ]


def toy_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0).astype("float32")
    return x, y


def values(variables):
    return [ops.convert_to_numpy(v).copy() for v in variables]


def test_each_optimizer_steps_batches_times_repeats():
    x, y = toy_data()
    model = TwoPhaseToy(seed=0)
    model.compile(learning_rate=0.01)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 4 batches x 2 epochs
    opt = model.phase_optimizers
    assert int(ops.convert_to_numpy(opt["opt_a"].iterations)) == 8 * 3
    assert int(ops.convert_to_numpy(opt["opt_b"].iterations)) == 8
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 8


def test_steps_per_execution_keeps_the_counts():
    from kgen.backend.execution import compile_options
    from kgen.config import TrainConfig

    x, y = toy_data()
    model = TwoPhaseToy(seed=0)
    if keras.backend.backend() == "torch":  # Keras runs one step per call on torch: kgen refuses more
        with pytest.raises(ValueError, match="must be 1 on the torch backend"):
            TrainConfig(model="ae", steps_per_execution=3).validate()
        options = compile_options()
        assert options["steps_per_execution"] == 1
    else:
        # the default never runs past a fixed number of steps: the largest divisor of all of them
        assert compile_options(steps=(12, 8))["steps_per_execution"] == 4
        assert compile_options(steps=(None, None))["steps_per_execution"] == 32
        with pytest.raises(ValueError, match="--steps-per-execution 3 must divide --steps-per-epoch 4"):
            TrainConfig(model="ae", steps_per_execution=3, steps_per_epoch=4).validate()
        options = compile_options(steps_per_execution=3)  # 3 does not divide the 4 batches of an epoch
    model.compile(learning_rate=0.01, **options)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    opt = model.phase_optimizers
    assert int(ops.convert_to_numpy(opt["opt_a"].iterations)) == 8 * 3
    assert int(ops.convert_to_numpy(opt["opt_b"].iterations)) == 8
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 8


@pytest.mark.parametrize("frozen", ["a", "b"])
def test_phase_updates_only_its_variables(frozen):
    # The frozen phase's optimizer has learning rate 0: its network may change
    # only if the other phase wrongly updates it.
    x, y = toy_data(32)
    model = TwoPhaseToy(seed=0)
    rates = {"opt_a": 0.1, "opt_b": 0.1, f"opt_{frozen}": 0.0}
    model.compile(optimizers={k: keras.optimizers.SGD(v) for k, v in rates.items()})
    nets = {"a": model.net_a, "b": model.net_b}
    moving = "b" if frozen == "a" else "a"
    before = {k: values(n.trainable_variables) for k, n in nets.items()}
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    after = {k: values(n.trainable_variables) for k, n in nets.items()}
    assert all(np.array_equal(b, a) for b, a in zip(before[frozen], after[frozen]))
    assert not all(np.array_equal(b, a) for b, a in zip(before[moving], after[moving]))


def test_state_is_carried_batchnorm_and_seed_generator():
    x, y = toy_data()
    model = TwoPhaseToy(seed=0)
    model.compile(learning_rate=0.01)
    bn = model.net_a.layers[1]
    mean_before = values([bn.moving_mean])[0]
    seed_before = values([model.seed_generator.state])[0]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert not np.allclose(values([bn.moving_mean])[0], mean_before)
    assert not np.array_equal(values([model.seed_generator.state])[0], seed_before)


def test_loss_falls_and_evaluate_runs_the_phases_without_gradients():
    x, y = toy_data()
    model = TwoPhaseToy(seed=0)
    model.compile(learning_rate=0.05)
    first = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(first) == {"loss", "loss_b"}
    weights = values(model.trainable_variables)
    again = model.evaluate(x, y, verbose=0, return_dict=True)
    assert all(np.array_equal(a, b) for a, b in zip(weights, values(model.trainable_variables)))
    assert again["loss"] == pytest.approx(first["loss"], rel=1e-5)
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0, validation_data=(x, y))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "val_loss" in history.history and "val_loss_b" in history.history


# -- input_gradient ------------------------------------------------------------------
W = np.array([[0.3, -1.2, 0.5], [0.8, 0.1, -0.4], [-0.6, 0.9, 0.2], [0.05, -0.3, 1.1]])


def f_numpy(x):
    return np.sum(np.tanh(x @ W) ** 2)


def f_keras(x):
    return ops.sum(ops.square(ops.tanh(ops.matmul(x, ops.convert_to_tensor(W.astype("float32"))))))


def test_input_gradient_matches_finite_differences():
    x = np.random.default_rng(1).normal(size=(5, 4))
    grad = ops.convert_to_numpy(input_gradient(f_keras, ops.convert_to_tensor(x.astype("float32"))))
    eps = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        numeric[idx] = (f_numpy(x + step) - f_numpy(x - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_input_gradient_is_differentiable_again():
    # f = sum(x^3): grad = 3x^2; sum(grad) = sum(3x^2) has gradient 6x.
    x = ops.convert_to_tensor(np.linspace(-1.0, 2.0, 6, dtype="float32").reshape(2, 3))

    def sum_of_gradient(v):
        return ops.sum(input_gradient(lambda u: ops.sum(u**3), v))

    second = ops.convert_to_numpy(input_gradient(sum_of_gradient, x))
    np.testing.assert_allclose(second, 6 * ops.convert_to_numpy(x), rtol=1e-5)


def test_batch_jacobian_matches_the_closed_form_and_is_differentiable_again():
    from kgen.backend import batch_jacobian

    # y = tanh(x W): dy_j/dx_i = (1 - y_j^2) W_ij, so J[b] = diag(1 - y_b^2) W^T.
    x = np.random.default_rng(2).normal(size=(5, 4)).astype("float32")
    w = ops.convert_to_tensor(W.astype("float32"))
    jacobian = ops.convert_to_numpy(batch_jacobian(lambda u: ops.tanh(ops.matmul(u, w)), ops.convert_to_tensor(x)))
    y = np.tanh(x @ W)
    expected = (1 - y**2)[:, :, None] * W.T[None]
    assert jacobian.shape == (5, 3, 4)
    np.testing.assert_allclose(jacobian, expected, rtol=1e-5, atol=1e-6)

    # y = u^3 elementwise: J[b] = diag(3 u_b^2), so sum(J) = sum(3u^2) has input gradient 6u.
    def sum_of_jacobian(v):
        return ops.sum(batch_jacobian(lambda u: u**3, v))

    second = ops.convert_to_numpy(input_gradient(sum_of_jacobian, ops.convert_to_tensor(x)))
    np.testing.assert_allclose(second, 6 * x, rtol=1e-5)


# -- conv_transpose (custom kernel gradient on JAX) -----------------------------------
@pytest.mark.parametrize("strides", [1, 2])
def test_conv_transpose_values_and_gradients_match_keras(strides):
    from kgen.backend import conv_transpose

    rng = np.random.default_rng(0)
    x = ops.convert_to_tensor(rng.normal(size=(2, 5, 5, 3)).astype("float32"))
    w = ops.convert_to_tensor(rng.normal(size=(3, 3, 4, 3)).astype("float32"))  # (kh, kw, out, in)
    out_shape = (2, 5 * strides, 5 * strides, 4)
    g = ops.convert_to_tensor(rng.normal(size=out_shape).astype("float32"))
    options = dict(strides=strides, padding="same")

    def loss(op):  # <g, T(x, w)>, as a function of x and of w
        return (lambda x_: ops.sum(g * op(x_, w, **options))), (lambda w_: ops.sum(g * op(x, w_, **options)))

    np.testing.assert_allclose(
        ops.convert_to_numpy(conv_transpose(x, w, **options)),
        ops.convert_to_numpy(ops.conv_transpose(x, w, **options)), atol=1e-5)
    for ours, reference, at in zip(loss(conv_transpose), loss(ops.conv_transpose), (x, w)):
        np.testing.assert_allclose(
            ops.convert_to_numpy(input_gradient(ours, at)), ops.convert_to_numpy(input_gradient(reference, at)),
            rtol=1e-4, atol=1e-4)


def test_kgen_conv2d_transpose_layer_equals_keras_layer():
    from kgen.nets.conv import Conv2DTranspose

    x = np.random.default_rng(1).normal(size=(2, 7, 7, 8)).astype("float32")
    ours = Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu")
    theirs = layers.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights([w + 0.1 for w in ours.get_weights()])  # nonzero bias
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(ours(x)), ops.convert_to_numpy(theirs(x)), atol=1e-5)
    assert keras.layers.deserialize(keras.layers.serialize(ours)).__class__ is Conv2DTranspose
