"""The autoencoder family and the RBM against hand-written loops of the same networks.

Run through ``python benchmarks/bench.py --suites ae-family``. For every model, on
every backend: kgen's model through ``model.fit`` (the backend's default jit setting,
as ``kgen train`` uses it); the bar, the same networks as a Keras model with a
hand-written train_step on that backend (``worker_keras``: ``benchmarks/reference.py``,
keras.layers.Dense networks on flat rows, the loss and penalty below in keras.ops);
and, for information, a loop written directly in that backend's framework
(``PLAIN``; TensorFlow: tf.function + GradientTape with raw variables; JAX: one
jitted step over a parameter list; PyTorch: nn.Linear layers + torch.optim.Adam).
Same widths, activations, loss, penalty, corruption, Adam(1e-3), batches of 28x28 inputs.

The references are what one would write by hand for each model:
  - autoencoders: an MLP, BCE-from-logits (or squared error) summed over pixels,
    averaged over the batch, plus the model's penalty;
  - contractive_ae: the exact Jacobian of the encoder by the framework's own
    per-example Jacobian (tape.batch_jacobian, vmap(jacrev), torch.func);
  - rbm: CD-1 with the textbook closed-form gradients (positive minus negative
    statistics, no autodiff), also computing the reconstruction error and the
    stochastic pseudo-log-likelihood that kgen logs every step.

Both sides read the same tf.data pipeline (``harness.pipeline``). Also measured:
kgen's plain shallow AE with the contractive AE's network, to report what the
contractive penalty costs per step, and the closed-form penalty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import harness
import reference
from harness import LEARNING_RATE, adam_update, jax_adam_trainer, pipeline, run_stateful, time_fit, timed

PIXELS = 784
WARMUP = 64  # steps before timing: compilation and the input pipeline settle


def warmup() -> int:
    return harness.warmup(WARMUP)


@dataclass(frozen=True)
class Spec:
    """One kgen model and the network a hand-written loop builds for it."""

    model: str  # kgen model name
    options: dict  # kgen options (the rest are the model's defaults)
    encoder: tuple  # ((width, activation), ...); the last activation is the code's
    decoder: tuple  # the last layer outputs logits (bce) or the reconstruction (mse)
    loss: str = "bce"
    kl_sparsity: tuple = ()  # (rho, weight)
    contractive_weight: float = 0.0
    gaussian_noise: float = 0.0  # sigma; corrupted inputs clipped to [0, 1]
    reference: bool = True  # False: a kgen-only row (compared with another kgen row)
    notes: str = field(default="", compare=False)


DENSE_DECODER_32 = ((512, "relu"), (PIXELS, "linear"))
SPECS = {
    "ae": Spec("ae", {}, ((512, "relu"), (32, "linear")), DENSE_DECODER_32),
    "stacked_ae": Spec("stacked_ae", {}, ((300, "relu"), (150, "relu")), ((300, "relu"), (PIXELS, "linear"))),
    "sparse_ae": Spec("sparse_ae", {}, ((512, "relu"), (64, "sigmoid")), DENSE_DECODER_32, kl_sparsity=(0.05, 1.0)),
    "denoising_ae": Spec("denoising_ae", {}, ((512, "relu"), (32, "linear")), DENSE_DECODER_32, gaussian_noise=0.3),
    "contractive_ae": Spec("contractive_ae", {}, ((64, "sigmoid"),), ((PIXELS, "linear"),), contractive_weight=0.1),
    "linear_ae": Spec("linear_ae", {}, ((16, "linear"),), ((PIXELS, "linear"),), loss="mse"),
    "rbm": Spec("rbm", {}, ((256, "sigmoid"),), ()),
    # kgen-only rows for the contractive penalty's cost: same network, no penalty / closed-form penalty
    "shallow_ae (no penalty)": Spec("ae", {"arch": "shallow", "latent_dim": 64}, (), (), reference=False),
    "contractive_ae closed-form": Spec("contractive_ae", {"jacobian": "closed-form"}, (), (), reference=False),
}


def glorot(rng, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype("float32")


def initial_layers(spec: Spec) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(kernel, bias, activation) per layer, encoder then decoder."""
    rng = np.random.default_rng(0)
    layers, width = [], PIXELS
    for out, activation in spec.encoder + spec.decoder:
        layers.append((glorot(rng, width, out), np.zeros(out, "float32"), activation))
        width = out
    return layers


# -- kgen -----------------------------------------------------------------------------
def worker_kgen(name: str, steps: int, jit=None) -> float:
    spec = SPECS[name]
    # what `kgen train` builds and compiles on this backend, for fits of the warm-up and ``steps`` steps
    model = harness.kgen_model(spec.model, spec.options, LEARNING_RATE, jit, steps=(warmup(), steps))
    return time_fit(model, pipeline(), steps, warmup())


# -- Keras: the same networks with a hand-written train_step on this backend (the bar) -----------
def keras_networks(spec: Spec) -> dict:
    """The encoder and decoder as keras.layers.Dense stacks on flat rows (the RBM: its three weights)."""
    import keras
    from keras import layers

    if spec.model == "rbm":
        return {"rbm": RBMWeights(spec.encoder[0][0])}

    def stack(widths, inputs, name):
        return keras.Sequential([keras.Input((inputs,))] + [layers.Dense(w, activation=a) for w, a in widths],
                                name=name)

    return {"encoder": stack(spec.encoder, PIXELS, "encoder"),
            "decoder": stack(spec.decoder, spec.encoder[-1][0], "decoder")}


def _rbm_weights_class():
    import keras

    class RBMWeights(keras.layers.Layer):
        """W (visible x hidden), visible bias b, hidden bias c."""

        def __init__(self, hidden: int, **kwargs):
            super().__init__(**kwargs)
            self.W = self.add_weight((PIXELS, hidden), initializer=keras.initializers.RandomNormal(0.0, 0.01), name="W")
            self.b = self.add_weight((PIXELS,), initializer="zeros", name="b")
            self.c = self.add_weight((hidden,), initializer="zeros", name="c")
            self.built = True

        def call(self, v):
            return keras.ops.sigmoid(v @ self.W + self.c)

    return RBMWeights


def RBMWeights(hidden: int):  # a class built on first use: keras is imported in the worker only
    return _rbm_weights_class()(hidden)


def autoencoder_loss(spec: Spec):
    """The model's loss in keras.ops: BCE from logits (softplus(l) - x l) or squared error summed over pixels,
    averaged over the batch, plus the model's penalty."""
    import keras
    from keras import ops

    def loss_fn(model, x):
        inputs = x
        if spec.gaussian_noise:
            noise = keras.random.normal(ops.shape(x), seed=model.seed_generator)
            inputs = ops.clip(x + spec.gaussian_noise * noise, 0.0, 1.0)
        if spec.contractive_weight:
            codes, jacobian = reference.value_and_batch_jacobian(lambda v: model.net("encoder", v), inputs)
        else:
            codes = model.net("encoder", inputs)
        out = model.net("decoder", codes)
        per_pixel = ops.softplus(out) - x * out if spec.loss == "bce" else ops.square(x - out)
        loss = ops.mean(ops.sum(per_pixel, axis=1))
        if spec.kl_sparsity:
            rho, weight = spec.kl_sparsity
            rho_hat = ops.clip(ops.mean(codes, axis=0), 1e-6, 1 - 1e-6)
            loss += weight * ops.sum(rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log((1 - rho) / (1 - rho_hat)))
        if spec.contractive_weight:
            loss += spec.contractive_weight * ops.mean(ops.sum(ops.square(jacobian), axis=(1, 2)))
        return loss

    return loss_fn


def rbm_cd1(model, x):
    """CD-1 with the textbook closed-form gradients in keras.ops, plus the reconstruction error and the
    stochastic pseudo-log-likelihood kgen logs: (their sum, [dW, db, dc])."""
    import keras
    from keras import ops

    rbm, seed = model.networks["rbm"], model.seed_generator
    W, b, c = (ops.convert_to_tensor(v) for v in (rbm.W, rbm.b, rbm.c))

    def sample(p):
        return ops.cast(keras.random.uniform(ops.shape(p), seed=seed) < p, "float32")

    def free_energy(v):
        return -ops.matmul(v, b) - ops.sum(ops.softplus(v @ W + c), axis=1)

    v0 = sample(x)
    ph0 = ops.sigmoid(v0 @ W + c)
    v1 = sample(ops.sigmoid(sample(ph0) @ ops.transpose(W) + b))
    ph1 = ops.sigmoid(v1 @ W + c)
    n = ops.cast(ops.shape(x)[0], "float32")
    grads = [-(ops.transpose(v0) @ ph0 - ops.transpose(v1) @ ph1) / n,
             -ops.mean(v0 - v1, axis=0), -ops.mean(ph0 - ph1, axis=0)]
    reconstruction_error = ops.mean(ops.square(v0 - ops.sigmoid(ph0 @ ops.transpose(W) + b)))
    flip = ops.one_hot(keras.random.randint((ops.shape(x)[0],), 0, PIXELS, seed=seed), PIXELS)
    pll = PIXELS * ops.mean(ops.log_sigmoid(free_energy(v0 + flip * (1 - 2 * v0)) - free_energy(v0)))
    return reconstruction_error + pll, grads


def worker_keras(name: str, steps: int, jit=None) -> float:
    import keras

    spec = SPECS[name]
    if spec.model == "rbm":
        phases = [reference.Phase("rbm", ("rbm",), rbm_cd1, closed_form=True)]
    else:
        phases = [reference.Phase("autoencoder", ("encoder", "decoder"), autoencoder_loss(spec))]
    key = phases[0].optimizer
    return reference.fit(lambda: keras_networks(spec), phases, lambda: {key: keras.optimizers.Adam(LEARNING_RATE)},
                         pipeline(flat=True), steps, warmup(), jit)


# -- TensorFlow ----------------------------------------------------------------------
def worker_tensorflow(name: str, steps: int) -> float:
    import keras
    import tensorflow as tf

    spec = SPECS[name]
    batches = iter(pipeline(flat=True))
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    if spec.model == "rbm":
        return tensorflow_rbm(spec, batches, optimizer, steps)
    layers = [(tf.Variable(w), tf.Variable(b), a) for w, b, a in initial_layers(spec)]
    variables = [v for w, b, _ in layers for v in (w, b)]
    activations = {"relu": tf.nn.relu, "sigmoid": tf.sigmoid, "linear": tf.identity}
    n_encoder = len(spec.encoder)

    def mlp(h, part):
        for w, b, a in part:
            h = activations[a](h @ w + b)
        return h

    def loss_fn(x):
        inputs = tf.clip_by_value(x + spec.gaussian_noise * tf.random.normal(tf.shape(x)), 0, 1) if spec.gaussian_noise else x
        with tf.GradientTape(watch_accessed_variables=False) as jacobian_tape:
            jacobian_tape.watch(inputs)
            codes = mlp(inputs, layers[:n_encoder])
        out = mlp(codes, layers[n_encoder:])
        if spec.loss == "bce":
            per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(x, out)
        else:
            per_pixel = tf.square(x - out)
        loss = tf.reduce_mean(tf.reduce_sum(per_pixel, axis=1))
        if spec.kl_sparsity:
            rho, weight = spec.kl_sparsity
            rho_hat = tf.clip_by_value(tf.reduce_mean(codes, axis=0), 1e-6, 1 - 1e-6)
            loss += weight * tf.reduce_sum(rho * tf.math.log(rho / rho_hat) + (1 - rho) * tf.math.log((1 - rho) / (1 - rho_hat)))
        if spec.contractive_weight:
            jacobian = jacobian_tape.batch_jacobian(codes, inputs)  # (batch, k, pixels)
            loss += spec.contractive_weight * tf.reduce_mean(tf.reduce_sum(tf.square(jacobian), axis=(1, 2)))
        return loss

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return timed(step, batches, steps, float, warmup())


def tensorflow_rbm(spec: Spec, batches, optimizer, steps: int) -> float:
    import tensorflow as tf

    hidden = spec.encoder[0][0]
    rng = np.random.default_rng(0)
    W = tf.Variable(rng.normal(0, 0.01, (PIXELS, hidden)).astype("float32"))
    b, c = tf.Variable(tf.zeros(PIXELS)), tf.Variable(tf.zeros(hidden))

    def sample(p):
        return tf.cast(tf.random.uniform(tf.shape(p)) < p, tf.float32)

    def free_energy(v):
        return -tf.linalg.matvec(v, b) - tf.reduce_sum(tf.nn.softplus(v @ W + c), axis=1)

    @tf.function
    def step(x):
        v0 = sample(x)
        ph0 = tf.sigmoid(v0 @ W + c)
        v1 = sample(tf.sigmoid(sample(ph0) @ tf.transpose(W) + b))
        ph1 = tf.sigmoid(v1 @ W + c)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        grads = [-(tf.transpose(v0) @ ph0 - tf.transpose(v1) @ ph1) / n,
                 -tf.reduce_mean(v0 - v1, axis=0), -tf.reduce_mean(ph0 - ph1, axis=0)]
        optimizer.apply(grads, [W, b, c])
        reconstruction_error = tf.reduce_mean(tf.square(v0 - tf.sigmoid(ph0 @ tf.transpose(W) + b)))
        flip = tf.one_hot(tf.random.uniform([tf.shape(x)[0]], 0, PIXELS, tf.int32), PIXELS)
        pll = PIXELS * tf.reduce_mean(tf.math.log_sigmoid(free_energy(v0 + flip * (1 - 2 * v0)) - free_energy(v0)))
        return reconstruction_error + pll

    return timed(step, batches, steps, float, warmup())


# -- JAX -----------------------------------------------------------------------------------
def worker_jax(name: str, steps: int) -> float:
    import jax
    import jax.numpy as jnp

    spec = SPECS[name]
    batches = map(jnp.asarray, pipeline(flat=True).as_numpy_iterator())
    if spec.model == "rbm":
        return jax_rbm(spec, batches, steps)
    layers = initial_layers(spec)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b, _ in layers]
    activation_of = [{"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "linear": lambda h: h}[a] for _, _, a in layers]
    n_encoder = len(spec.encoder)

    def mlp(params, h, first, last):
        for (w, b), activation in zip(params[first:last], activation_of[first:last]):
            h = activation(h @ w + b)
        return h

    def encode(params, x):
        return mlp(params, x, 0, n_encoder)

    def loss_fn(params, x, key):
        inputs = jnp.clip(x + spec.gaussian_noise * jax.random.normal(key, x.shape), 0, 1) if spec.gaussian_noise else x
        codes = encode(params, inputs)
        out = mlp(params, codes, n_encoder, len(layers))
        if spec.loss == "bce":
            per_pixel = jnp.maximum(out, 0) - out * x + jnp.log1p(jnp.exp(-jnp.abs(out)))
        else:
            per_pixel = jnp.square(x - out)
        loss = jnp.mean(jnp.sum(per_pixel, axis=1))
        if spec.kl_sparsity:
            rho, weight = spec.kl_sparsity
            rho_hat = jnp.clip(jnp.mean(codes, axis=0), 1e-6, 1 - 1e-6)
            loss += weight * jnp.sum(rho * jnp.log(rho / rho_hat) + (1 - rho) * jnp.log((1 - rho) / (1 - rho_hat)))
        if spec.contractive_weight:
            jacobian = jax.vmap(jax.jacrev(lambda xi: encode(params, xi)))(inputs)  # (batch, k, pixels)
            loss += spec.contractive_weight * jnp.mean(jnp.sum(jnp.square(jacobian), axis=(1, 2)))
        return loss

    step, state = jax_adam_trainer(loss_fn, params)
    return run_stateful(step, state, batches, steps, warmup())


def jax_rbm(spec: Spec, batches, steps: int) -> float:
    import jax
    import jax.numpy as jnp

    hidden = spec.encoder[0][0]
    rng = np.random.default_rng(0)
    params = (jnp.asarray(rng.normal(0, 0.01, (PIXELS, hidden)).astype("float32")), jnp.zeros(PIXELS), jnp.zeros(hidden))

    def sample(key, p):
        return (jax.random.uniform(key, p.shape) < p).astype(jnp.float32)

    def free_energy(params, v):
        W, b, c = params
        return -v @ b - jnp.sum(jax.nn.softplus(v @ W + c), axis=1)

    @jax.jit
    def step(state, x):
        (W, b, c), m, s, t, key = state
        key, k0, k1, k2, k3 = jax.random.split(key, 5)
        v0 = sample(k0, x)
        ph0 = jax.nn.sigmoid(v0 @ W + c)
        v1 = sample(k2, jax.nn.sigmoid(sample(k1, ph0) @ W.T + b))
        ph1 = jax.nn.sigmoid(v1 @ W + c)
        grads = (-(v0.T @ ph0 - v1.T @ ph1) / x.shape[0], -jnp.mean(v0 - v1, axis=0), -jnp.mean(ph0 - ph1, axis=0))
        new, m, s, t = adam_update((W, b, c), grads, m, s, t)
        reconstruction_error = jnp.mean(jnp.square(v0 - jax.nn.sigmoid(ph0 @ W.T + b)))
        flip = jax.nn.one_hot(jax.random.randint(k3, (x.shape[0],), 0, PIXELS), PIXELS)
        pll = PIXELS * jnp.mean(jax.nn.log_sigmoid(free_energy((W, b, c), v0 + flip * (1 - 2 * v0)) - free_energy((W, b, c), v0)))
        return (new, m, s, t, key), reconstruction_error + pll

    zeros = jax.tree.map(jnp.zeros_like, params)
    return run_stateful(step, (params, zeros, zeros, 0.0, jax.random.key(0)), batches, steps, warmup())


# -- PyTorch ---------------------------------------------------------------------------
def worker_torch(name: str, steps: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    spec = SPECS[name]
    batches = map(torch.from_numpy, pipeline(flat=True).as_numpy_iterator())
    if spec.model == "rbm":
        return torch_rbm(spec, batches, steps)
    layers = initial_layers(spec)
    linears = nn.ModuleList()
    for w, b, _ in layers:
        linear = nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T))
            linear.bias.copy_(torch.from_numpy(b))
        linears.append(linear)
    activation_of = [{"relu": torch.relu, "sigmoid": torch.sigmoid, "linear": lambda h: h}[a] for _, _, a in layers]
    n_encoder = len(spec.encoder)
    optimizer = torch.optim.Adam(linears.parameters(), lr=LEARNING_RATE)
    bce = nn.BCEWithLogitsLoss(reduction="none")

    def mlp(h, first, last):
        for linear, activation in zip(linears[first:last], activation_of[first:last]):
            h = activation(linear(h))
        return h

    def encode(x):
        return mlp(x, 0, n_encoder)

    def step(x):
        optimizer.zero_grad()
        inputs = torch.clamp(x + spec.gaussian_noise * torch.randn_like(x), 0, 1) if spec.gaussian_noise else x
        codes = encode(inputs)
        out = mlp(codes, n_encoder, len(layers))
        per_pixel = bce(out, x) if spec.loss == "bce" else torch.square(x - out)
        loss = per_pixel.sum(dim=1).mean()
        if spec.kl_sparsity:
            rho, weight = spec.kl_sparsity
            rho_hat = torch.clamp(codes.mean(dim=0), 1e-6, 1 - 1e-6)
            loss = loss + weight * torch.sum(rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat)))
        if spec.contractive_weight:
            jacobian = torch.func.vmap(torch.func.jacrev(encode))(inputs)  # (batch, k, pixels)
            loss = loss + spec.contractive_weight * jacobian.square().sum(dim=(1, 2)).mean()
        loss.backward()
        optimizer.step()
        return loss

    return timed(step, batches, steps, float, warmup())


def torch_rbm(spec: Spec, batches, steps: int) -> float:
    import torch

    hidden = spec.encoder[0][0]
    W = torch.randn(PIXELS, hidden) * 0.01
    b, c = torch.zeros(PIXELS), torch.zeros(hidden)
    params = [torch.nn.Parameter(t) for t in (W, b, c)]
    W, b, c = params
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)

    def free_energy(v):
        return -v @ b - torch.nn.functional.softplus(v @ W + c).sum(dim=1)

    @torch.no_grad()
    def step(x):
        v0 = torch.bernoulli(x)
        ph0 = torch.sigmoid(v0 @ W + c)
        v1 = torch.bernoulli(torch.sigmoid(torch.bernoulli(ph0) @ W.T + b))
        ph1 = torch.sigmoid(v1 @ W + c)
        W.grad = -(v0.T @ ph0 - v1.T @ ph1) / x.shape[0]
        b.grad = -(v0 - v1).mean(dim=0)
        c.grad = -(ph0 - ph1).mean(dim=0)
        optimizer.step()
        reconstruction_error = torch.square(v0 - torch.sigmoid(ph0 @ W.T + b)).mean()
        flip = torch.nn.functional.one_hot(torch.randint(0, PIXELS, (x.shape[0],)), PIXELS).float()
        pll = PIXELS * torch.nn.functional.logsigmoid(free_energy(v0 + flip * (1 - 2 * v0)) - free_energy(v0)).mean()
        return reconstruction_error + pll

    return timed(step, batches, steps, float, warmup())


# The framework's own loop on each backend (for information).
PLAIN = {"tensorflow": worker_tensorflow, "jax": worker_jax, "torch": worker_torch}
MODELS = list(SPECS)


def has_reference(name: str) -> bool:
    return SPECS[name].reference
