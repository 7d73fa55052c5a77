"""Adversarial autoencoders: kgen's phased core against hand-written AAE loops of the same networks.

Run through ``python benchmarks/bench.py --suites aae``. For every model, on every
backend: kgen's ``aae`` through ``model.fit`` (``kgen train``'s compile options on that
backend); the bar, the same networks as a Keras model with a hand-written train_step on
that backend (``worker_keras``: ``benchmarks/reference.py`` with the phase losses below);
and, for information, the loops of the frameworks' tutorials (``PLAIN``: JAX, PyTorch).
All read the same tf.data pipeline (``harness.pipeline``: random binary images in [0, 1]).

  aae                  ``AAE((28, 28, 1), seed=0)``: the defaults, mode unsupervised, gaussian prior,
                       latent 8, arch dense, hidden 512, disc_width 256, bce loss
  aae_semi_supervised  ``mode="semi-supervised", labels="100"``: the encoder also outputs the logits
                       of a 10-way categorical y, the decoder reads [z, softmax(y)], a second
                       discriminator pushes y to one-hot draws, and a classification phase trains
                       on a 128-draw mini-batch of 100 stored labelled images (``set_labelled``)

The networks are kgen's (``kgen/nets/dense.py``, ``AAE._discriminator``), rebuilt from
the framework's plain layers (Keras default initialisers; PyTorch's are set to match):
  encoder        x -> Flatten -> Dense(512, relu) -> Dense(K + 8)   (y's K logits, then z; K = 0 or 10)
  decoder        [z, softmax(y)] -> Dense(512, relu) -> Dense(784) -> reshape   (logits)
  discriminators z (8) or y (K) -> Dense(512) -> LeakyReLU(0.2) -> Dense(256) -> LeakyReLU(0.2) -> Dense(1)

The work per batch is kgen's: one step of each phase, each phase with its own Adam
(Keras's epsilon 1e-7 everywhere, PyTorch's set to it) and its own fresh forward
pass of the encoder (three passes per batch, four semi-supervised):
  reconstruction  encoder + decoder minimise the Bernoulli NLL of x under sigmoid(logits),
                  summed over pixels, averaged over the batch; Adam(1e-3)
  discriminator   z_prior ~ N(0, I) (128 x 8) drawn per batch, codes = stop_gradient(encoder(x));
                  D minimises mean softplus(-D(z_prior)) + mean softplus(D(codes)) (DCGAN's game,
                  ``gan.d_objective``); semi-supervised plus the same game of the category
                  discriminator, one-hot draws of a uniform K-way categorical against
                  stop_gradient(softmax(y)); one Adam(1e-3, beta_1=0.5) over both discriminators
  generator       the encoder's variables minimise mean softplus(-D(encoder(x))) (non-saturating,
                  ``gan.g_objective``), semi-supervised plus the category term; Adam(1e-3, beta_1=0.5)
  classification  (semi-supervised) 128 indices drawn into the 100 labelled images, the encoder
                  minimises the cross-entropy of y's logits; Adam(1e-3)
One "sample" is one image of the batch: samples/s = batches/s x 128.

The references (the shapes of ``gan.py``'s):
  keras       (every backend, the bar) keras-io's pattern: a keras.Model whose ``train_step`` takes
              one gradient step per phase (a GradientTape on TensorFlow, value_and_grad +
              stateless_apply on JAX, backward + optimizer.apply on torch), each phase its own
              optimizer, loss trackers, trained with ``fit()`` under the jit_compile and
              steps_per_execution kgen uses on that backend.
  jax         (plain, for information) the same Keras networks as pure functions (``stateless_call``), ``jax.value_and_grad``
              per phase w.r.t. that phase's networks, the Keras optimizers' ``stateless_apply``,
              all phases in one ``jax.jit`` step per batch.
  torch       (plain, for information) a plain PyTorch loop: nn.Sequential networks, torch.optim.Adam per phase,
              BCEWithLogitsLoss summed over pixels; the discriminator's codes made under no_grad,
              the generator's backward into the encoder's parameters only.
The Keras references share the phase losses below (keras.ops, the networks
behind a ``net(name, inputs)`` callable); their randomness is drawn by each backend.
kgen also logs D's mean outputs on prior draws and codes (d_prior, d_codes, and the
category discriminator's, and the classifier's accuracy); the references log the losses only.

All of them take the same WARMUP batches before timing. Every worker checks after timing
that each phase's optimizer took exactly one step per batch (warm-up and timed) and that
the last losses are finite, and fails the measurement otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gan import SPECS as GAN_SPECS
import harness
import reference
from gan import WARMUP, d_objective, g_objective
from harness import data, pipeline, time_fit, timed

IMAGE = (28, 28, 1)
PIXELS = math.prod(IMAGE)
LATENT = 8  # kgen's latent_dim for the gaussian prior
HIDDEN = 512  # encoder and decoder (arch dense)
DISC_WIDTH = 256  # discriminators: Dense(2w) -> Dense(w) -> logit
LEAK = 0.2
LEARNING_RATE = 1e-3  # AAE.default_learning_rate
ADAM_EPSILON = 1e-7  # Keras's (PyTorch's default is 1e-8)
GAME = GAN_SPECS["dcgan"]  # the code GAN's objectives: D's BCE from logits, G non-saturating


@dataclass(frozen=True)
class Spec:
    """One kgen AAE configuration and what a hand-written loop needs to do the same work."""

    options: dict  # kgen options beyond the defaults
    categories: int = 0  # K, the size of the categorical code y (0: no label head)
    labelled: int = 0  # labelled images the classification phase draws from (0: no such phase)


SPECS = {
    "aae": Spec({}),
    "aae_semi_supervised": Spec({"mode": "semi-supervised", "labels": "100", "num_classes": 10}, categories=10,
                                labelled=100),
}

# Each phase's optimizer (kgen's phase optimizer keys): (beta_1, the networks it updates).
PHASES = {
    "autoencoder": (0.9, ("encoder", "decoder")),
    "discriminator": (0.5, ("code_discriminator", "category_discriminator")),
    "generator": (0.5, ("encoder",)),
    "classifier": (0.9, ("encoder",)),
}


def warmup() -> int:
    return harness.warmup(WARMUP)


def phase_keys(spec: Spec) -> list[str]:
    return [key for key in PHASES if key != "classifier" or spec.labelled]


def labelled_set(spec: Spec):
    """The labelled subset: the first ``spec.labelled`` images of the harness data, labels 0..K-1 in turn."""
    return data()[: spec.labelled], (np.arange(spec.labelled) % spec.categories).astype("int32")


def check(name: str, steps: int, updates: dict, losses) -> None:
    """Fail the measurement unless every phase's optimizer took exactly one step per batch
    (warm-up and timed) and the losses at the end are finite."""
    expected = warmup() + steps
    took = {key: int(value) for key, value in updates.items()}
    if set(took) != set(phase_keys(SPECS[name])) or any(n != expected for n in took.values()):
        raise RuntimeError(f"{name}: the phase optimizers took {took} steps, expected {expected} each")
    values = [float(v) for v in losses]
    if not all(math.isfinite(v) for v in values):
        raise RuntimeError(f"{name}: non-finite losses {values}")


# -- kgen ------------------------------------------------------------------------------
def worker_kgen(name: str, steps: int, jit=None) -> float:
    spec = SPECS[name]
    # what `kgen train` builds on this backend (the model's default learning rate and optimizers),
    # with steps per execution dividing both fits' step counts
    model = harness.kgen_model("aae", spec.options, None, jit, steps=(warmup(), steps), input_shape=IMAGE)
    if spec.labelled:
        model.set_labelled(*labelled_set(spec))
    rate = time_fit(model, pipeline(), steps, warmup())
    logs = {m.name: m.result() for m in model.metrics}
    names = ("loss", "d_loss", "g_loss") + (("classification_loss",) if spec.labelled else ())
    check(name, steps, {key: opt.iterations.numpy() for key, opt in model.phase_optimizers.items()},
          [logs[n] for n in names])
    return rate


# -- what the Keras references (TensorFlow, JAX) share ------------------------------------
def keras_networks(spec: Spec) -> dict:
    """kgen's AAE networks from keras.layers, by name (the category discriminator only with a label head)."""
    import keras
    from keras import layers

    def discriminator(inputs: int, name: str):
        return keras.Sequential([
            keras.Input((inputs,)), layers.Dense(2 * DISC_WIDTH), layers.LeakyReLU(LEAK),
            layers.Dense(DISC_WIDTH), layers.LeakyReLU(LEAK), layers.Dense(1),
        ], name=name)

    networks = {
        "encoder": keras.Sequential([keras.Input(IMAGE), layers.Flatten(), layers.Dense(HIDDEN, activation="relu"),
                                     layers.Dense(spec.categories + LATENT)], name="encoder"),
        "decoder": keras.Sequential([keras.Input((LATENT + spec.categories,)), layers.Dense(HIDDEN, activation="relu"),
                                     layers.Dense(PIXELS), layers.Reshape(IMAGE)], name="decoder"),
        "code_discriminator": discriminator(LATENT, "code_discriminator"),
    }
    if spec.categories:
        networks["category_discriminator"] = discriminator(spec.categories, "category_discriminator")
    return networks


def keras_optimizers(spec: Spec) -> dict:
    import keras

    return {key: keras.optimizers.Adam(LEARNING_RATE, beta_1=PHASES[key][0]) for key in phase_keys(spec)}


def phase_variables(spec: Spec, key: str, networks: dict) -> list:
    return [v for name in PHASES[key][1] if name in networks for v in networks[name].trainable_variables]


def encode(spec: Spec, net, x):
    """(z, y's logits or None) from the encoder in training mode."""
    h = net("encoder", x)
    return (h, None) if not spec.categories else (h[:, spec.categories:], h[:, : spec.categories])


def reconstruction_loss(spec: Spec, net, x):
    from keras import ops

    z, logits = encode(spec, net, x)
    code = z if logits is None else ops.concatenate([z, ops.softmax(logits)], axis=-1)
    flat = ops.reshape(net("decoder", code), (-1, PIXELS))
    return ops.mean(ops.sum(ops.binary_crossentropy(ops.reshape(x, (-1, PIXELS)), flat, from_logits=True), axis=1))


def discriminator_loss(spec: Spec, net, x, prior_z, prior_y):
    """The code discriminator's game (plus the category discriminator's), the encoder's outputs held fixed."""
    from keras import ops

    z, logits = encode(spec, net, x)
    loss = d_objective(GAME, net("code_discriminator", prior_z), net("code_discriminator", ops.stop_gradient(z)))
    if logits is not None:
        loss += d_objective(GAME, net("category_discriminator", prior_y),
                            net("category_discriminator", ops.stop_gradient(ops.softmax(logits))))
    return loss


def generator_loss(spec: Spec, net, x):
    from keras import ops

    z, logits = encode(spec, net, x)
    loss = g_objective(GAME, net("code_discriminator", z))
    if logits is not None:
        loss += g_objective(GAME, net("category_discriminator", ops.softmax(logits)))
    return loss


def classification_loss(spec: Spec, net, images, labels):
    from keras import ops

    logits = encode(spec, net, images)[1]
    return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


# -- Keras: keras-io's train_step on this backend, one step per phase (the bar) ---------------------------
def keras_phases(spec: Spec) -> list:
    """The reconstruction, discriminator and generator phases (and the classification phase)."""
    import keras
    from keras import ops

    labelled = [ops.convert_to_tensor(a) for a in labelled_set(spec)] if spec.labelled else None

    def d_loss(model, x):
        batch = ops.shape(x)[0]
        prior_z = keras.random.normal((batch, LATENT), seed=model.seed_generator)
        prior_y = None
        if spec.categories:
            prior_y = ops.one_hot(keras.random.randint((batch,), 0, spec.categories, seed=model.seed_generator),
                                  spec.categories)
        return discriminator_loss(spec, model.net, x, prior_z, prior_y)

    def c_loss(model, x):
        index = keras.random.randint((ops.shape(x)[0],), 0, spec.labelled, seed=model.seed_generator)
        return classification_loss(spec, model.net, ops.take(labelled[0], index, axis=0),
                                   ops.take(labelled[1], index, axis=0))

    networks = ["encoder", "decoder", "code_discriminator"] + (["category_discriminator"] if spec.categories else [])
    losses = {"autoencoder": lambda model, x: reconstruction_loss(spec, model.net, x), "discriminator": d_loss,
              "generator": lambda model, x: generator_loss(spec, model.net, x), "classifier": c_loss}
    return [reference.Phase(key, tuple(n for n in PHASES[key][1] if n in networks), losses[key])
            for key in phase_keys(spec)]


def worker_keras(name: str, steps: int, jit=None) -> float:
    spec = SPECS[name]
    return reference.fit(lambda: keras_networks(spec), keras_phases(spec), lambda: keras_optimizers(spec),
                         pipeline(), steps, warmup(), jit)


# -- JAX: stateless_call + value_and_grad per phase + stateless_apply, one jitted step per batch ----------
def worker_jax(name: str, steps: int) -> float:
    import jax
    import jax.numpy as jnp

    spec = SPECS[name]
    networks = keras_networks(spec)
    optimizers = keras_optimizers(spec)
    for key, optimizer in optimizers.items():
        optimizer.build(phase_variables(spec, key, networks))
    labelled_images, labelled_labels = map(jnp.asarray, labelled_set(spec)) if spec.labelled else (None, None)

    def runner(params):
        """``net(name, inputs)``: the networks in training mode as pure functions of ``params`` (no
        non-trainable state: no batch norm)."""
        return lambda network, inputs: networks[network].stateless_call(params[network], [], inputs, training=True)[0]

    def phase(key, loss_fn, params, opt_state, *args):
        """One phase: the loss's value and gradients w.r.t. the phase's networks, its optimizer's step."""
        own = [n for n in PHASES[key][1] if n in networks]
        loss, grads = jax.value_and_grad(lambda mine: loss_fn(spec, runner({**params, **mine}), *args))(
            {n: params[n] for n in own})
        flat, opt_state[key] = optimizers[key].stateless_apply(
            opt_state[key], [g for n in own for g in grads[n]], [p for n in own for p in params[n]])
        for n in own:  # back into per-network lists
            params[n], flat = flat[: len(params[n])], flat[len(params[n]):]
        return loss

    @jax.jit
    def train_step(state, x):
        params, opt_state, key = dict(state[0]), dict(state[1]), state[2]
        key, z_key, y_key, index_key = jax.random.split(key, 4)
        batch = x.shape[0]
        prior_z = jax.random.normal(z_key, (batch, LATENT))
        prior_y = jax.nn.one_hot(jax.random.randint(y_key, (batch,), 0, spec.categories), spec.categories) \
            if spec.categories else None
        losses = [phase("autoencoder", reconstruction_loss, params, opt_state, x),
                  phase("discriminator", discriminator_loss, params, opt_state, x, prior_z, prior_y),
                  phase("generator", generator_loss, params, opt_state, x)]
        if spec.labelled:
            index = jax.random.randint(index_key, (batch,), 0, spec.labelled)
            losses.append(phase("classifier", classification_loss, params, opt_state, labelled_images[index],
                                labelled_labels[index]))
        return (params, opt_state, key), jnp.stack(losses)

    holder = {"state": ({n: [v.value for v in net.trainable_variables] for n, net in networks.items()},
                        {k: [v.value for v in opt.variables] for k, opt in optimizers.items()}, jax.random.key(0))}

    def step(x):
        holder["state"], holder["losses"] = train_step(holder["state"], x)
        return holder["losses"]

    batches = map(jnp.asarray, pipeline().as_numpy_iterator())
    rate = timed(step, batches, steps, lambda losses: losses.block_until_ready(), warmup())
    opt_state = holder["state"][1]
    # where the step count sits in an optimizer's state (by identity: == on Keras variables compares values)
    at = {k: next(i for i, v in enumerate(opt.variables) if v is opt.iterations) for k, opt in optimizers.items()}
    check(name, steps, {k: opt_state[k][at[k]] for k in optimizers}, holder["losses"])
    return rate


# -- PyTorch: nn.Sequential networks, torch.optim.Adam per phase, a Python loop ---------------------------
def torch_networks(spec: Spec) -> dict:
    """kgen's AAE networks as nn.Sequential, initialised as Keras initialises Dense (Glorot uniform, zero bias)."""
    from torch import nn

    def discriminator(inputs: int):
        return nn.Sequential(nn.Linear(inputs, 2 * DISC_WIDTH), nn.LeakyReLU(LEAK),
                             nn.Linear(2 * DISC_WIDTH, DISC_WIDTH), nn.LeakyReLU(LEAK), nn.Linear(DISC_WIDTH, 1))

    networks = {
        # NHWC images with one channel: flattening them gives the same pixel order as Keras
        "encoder": nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, HIDDEN), nn.ReLU(),
                                 nn.Linear(HIDDEN, spec.categories + LATENT)),
        "decoder": nn.Sequential(nn.Linear(LATENT + spec.categories, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, PIXELS)),
        "code_discriminator": discriminator(LATENT),
    }
    if spec.categories:
        networks["category_discriminator"] = discriminator(spec.categories)
    for network in networks.values():
        for module in network:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    return networks


def worker_torch(name: str, steps: int) -> float:
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    spec = SPECS[name]
    K = spec.categories
    networks = torch_networks(spec)
    encoder, decoder, code_d = networks["encoder"], networks["decoder"], networks["code_discriminator"]
    category_d = networks.get("category_discriminator")
    params = {key: [p for n in PHASES[key][1] if n in networks for p in networks[n].parameters()]
              for key in phase_keys(spec)}
    optimizers = {key: torch.optim.Adam(params[key], lr=LEARNING_RATE, betas=(PHASES[key][0], 0.999),
                                        eps=ADAM_EPSILON) for key in params}
    bce = nn.BCEWithLogitsLoss(reduction="none")
    labelled_images, labelled_labels = map(torch.from_numpy, labelled_set(spec)) if spec.labelled else (None, None)
    last = {}  # the last step's losses, for the final check

    def encode(x):
        h = encoder(x)
        return (h, None) if not K else (h[:, K:], h[:, :K])

    def update(key, loss):
        optimizers[key].zero_grad()
        loss.backward(inputs=params[key])  # this phase's parameters only
        optimizers[key].step()
        return loss.detach()

    def step(x):
        batch = x.shape[0]
        z, logits = encode(x)
        code = z if not K else torch.cat([z, logits.softmax(dim=1)], dim=1)
        losses = [update("autoencoder", bce(decoder(code), x.flatten(1)).sum(dim=1).mean())]
        with torch.no_grad():  # the codes D judges: no graph through the encoder
            z, logits = encode(x)
        d_loss = F.softplus(-code_d(torch.randn(batch, LATENT))).mean() + F.softplus(code_d(z)).mean()
        if K:
            prior_y = F.one_hot(torch.randint(0, K, (batch,)), K).float()
            d_loss = (d_loss + F.softplus(-category_d(prior_y)).mean()
                      + F.softplus(category_d(logits.softmax(dim=1))).mean())
        losses.append(update("discriminator", d_loss))
        z, logits = encode(x)
        g_loss = F.softplus(-code_d(z)).mean()
        if K:
            g_loss = g_loss + F.softplus(-category_d(logits.softmax(dim=1))).mean()
        losses.append(update("generator", g_loss))  # D's weight gradients are not computed
        if spec.labelled:
            index = torch.randint(0, spec.labelled, (batch,))
            losses.append(update("classifier", F.cross_entropy(encode(labelled_images[index])[1],
                                                                labelled_labels[index].long())))
        last["losses"] = torch.stack(losses)
        return last["losses"]

    batches = map(torch.from_numpy, pipeline().as_numpy_iterator())
    rate = timed(step, batches, steps, lambda losses: losses.tolist(), warmup())
    check(name, steps, {key: opt.state[params[key][0]]["step"] for key, opt in optimizers.items()}, last["losses"])
    return rate


# The frameworks' own loops (for information); TensorFlow's is the Keras reference itself.
PLAIN = {"jax": worker_jax, "torch": worker_torch}
MODELS = list(SPECS)


def has_reference(name: str) -> bool:
    return True
