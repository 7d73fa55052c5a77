"""DCGAN and WGAN-GP: kgen's phased core against hand-written GAN loops of the same networks.

Run through ``python benchmarks/bench.py --suites gan``. For every model, on every
backend: kgen's model through ``model.fit`` (``kgen train``'s compile options on that
backend); the bar, the same networks as a Keras model with a hand-written train_step
on that backend (``worker_keras``: ``benchmarks/reference.py``, a D phase repeated
``d_steps`` times and a G phase, their losses below in keras.ops); and, for
information, the loops of the frameworks' tutorials (``PLAIN``). All read the same
tf.data pipeline (``harness.pipeline``, random images scaled to [-1, 1]).

The networks are kgen's defaults for 28x28x1 (``kgen/nets/gan.py``), rebuilt from
the framework's plain layers:
  generator      z (100) -> Dense(7*7*128, no bias) -> BN -> ReLU -> reshape 7x7x128
                 -> ConvT(64, 4, stride 2, no bias) -> BN -> ReLU -> ConvT(1, 4, stride 2) -> tanh
  discriminator  x -> Conv(64, 4, stride 2) -> LeakyReLU(0.2) -> Conv(128, 4, stride 2) [-> BN]
                 -> LeakyReLU(0.2) -> Flatten -> Dense(1)
kernels N(0, 0.02), batch norm momentum 0.9 (Keras) = 0.1 (PyTorch), epsilon 1e-3;
the critic of WGAN-GP has no batch norm.

The work per batch is kgen's: ``d_steps`` discriminator steps on the same real
batch, each with fresh noise and a generator forward pass in training mode (so
G's batch-norm statistics move), real and fake images through D separately; then
one generator step with fresh noise through D in training mode.
  dcgan    1 D step; D minimises mean softplus(-D(x)) + mean softplus(D(G(z))) (BCE from logits),
           G the non-saturating mean softplus(-D(G(z))); Adam(2e-4, beta_1=0.5) for each player.
  wgan_gp  5 critic steps; critic loss mean f(G(z)) - mean f(x) + 10 * mean (||grad f(x_hat)|| - 1)^2
           at x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per image (double backpropagation);
           G minimises -mean f(G(z)); Adam(1e-4, beta_1=0, beta_2=0.9).
One "sample" is one real image consumed: samples/s = batches/s x 128, whatever the
number of D steps per batch.

The same-framework reference (``worker_keras``) is keras-io's pattern ("DCGAN to generate
face images", "WGAN-GP overriding Model.train_step") on every backend: a keras.Model whose
``train_step`` takes the D steps and then the G step (TensorFlow: a GradientTape each, the
penalty through a nested tape; JAX: value_and_grad + stateless_apply, the penalty by jax.grad;
torch: backward + optimizer.apply, the penalty by autograd.grad(create_graph=True)), each
player its own optimizer, d/g loss trackers, trained with ``fit()`` under the jit_compile and
steps_per_execution kgen uses on that backend, so that the comparison is about the training
step alone. The fake batch of a D step is held fixed (stop_gradient), as a hand-written D step
detaches it. (keras-io's DCGAN puts real and fake images through D as one concatenated batch
with noisy labels; here they go separately, as in kgen, so batch norm sees the same batches.)
The cross-backend reference (``worker_keras_io``, "keras-io's float32 loop") is that train_step on
TensorFlow in float32 compiled as keras-io compiles it: Keras's defaults (one step per execution, no
XLA on a CPU).

The frameworks' own loops (``PLAIN``, for information):
  jax         keras.io's "Writing a training loop from scratch in JAX": the same plain-Keras
              networks as pure functions (``stateless_call``), ``jax.value_and_grad`` per
              player, the Keras optimizers' ``stateless_apply``, one ``jax.jit`` step per
              batch (D steps unrolled, as kgen's JAX shell does; Keras's JAX fit() also calls
              its jitted step once per batch, steps_per_execution only drops the callbacks in
              between), the penalty by ``jax.grad`` inside the critic's loss.
  torch       a plain PyTorch loop (the PyTorch DCGAN tutorial's shape): nn.Sequential
              networks in NCHW, torch.optim.Adam, BCEWithLogitsLoss for DCGAN, the fake batch
              made under no_grad for the D step, the G step back-propagating into G's
              parameters only; the penalty by torch.autograd.grad(create_graph=True).
On JAX the reference uses keras.layers.Conv2DTranspose as it is, while kgen's generator
uses kgen.nets.conv.Conv2DTranspose, whose kernel gradient avoids XLA:CPU's slow
lhs-dilated convolution (kgen.backend.jax.conv_transpose).

All of them take the same WARMUP batches before timing. Every worker checks after timing that each optimizer took exactly the steps it should
((warm-up + timed batches) x d_steps for D, one per batch for G) and that the last
losses are finite, and fails the measurement otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import harness
import reference
from harness import pipeline, time_fit, timed

WARMUP = 32  # batches before timing: one execution of kgen's 32 steps per execution (TF, JAX), compiles
LATENT = 100
FILTERS = 64  # first D layer; G starts from 7x7x(2 * FILTERS)
START = (7, 7, 2 * FILTERS)  # G's projection: 28 = 7 x 2 x 2
CHANNELS = 1
INIT_STDDEV = 0.02  # DCGAN's N(0, 0.02) kernels
BN_MOMENTUM = 0.9  # Keras convention; PyTorch's momentum is 1 - this
BN_EPSILON = 1e-3  # Keras's default (PyTorch's default is 1e-5)
LEAK = 0.2


@dataclass(frozen=True)
class Spec:
    """One kgen GAN and what a hand-written loop needs to do the same work."""

    objective: str  # "bce" (D's logit, non-saturating G) or "wasserstein" (critic scores)
    learning_rate: float
    beta_1: float
    beta_2: float
    d_steps: int  # D (critic) steps per batch, on the same real batch with fresh noise
    critic_batch_norm: bool  # batch norm after D's second conv
    gp_weight: float = 0.0  # lambda of the gradient penalty (0: none)
    options: tuple = ()  # kgen's model options, (name, value) pairs: the conv networks where they are not the default


SPECS = {
    "dcgan": Spec("bce", 2e-4, 0.5, 0.999, d_steps=1, critic_batch_norm=True),
    "wgan_gp": Spec("wasserstein", 1e-4, 0.0, 0.9, d_steps=5, critic_batch_norm=False, gp_weight=10.0,
                    options=(("arch", "conv"),)),
}


def warmup() -> int:
    return harness.warmup(WARMUP)


def images():
    """The harness pipeline of 128-image batches, scaled to [-1, 1] as kgen scales data for GANs."""
    return pipeline(symmetric=True)


def check(name: str, steps: int, d_updates: int, g_updates: int, losses) -> None:
    """Fail the measurement unless each player's optimizer took exactly its steps (warm-up and timed
    batches, x d_steps for D) and the losses at the end (d_loss, g_loss) are finite."""
    batches = warmup() + steps
    expected = (batches * SPECS[name].d_steps, batches)
    if (int(d_updates), int(g_updates)) != expected:
        raise RuntimeError(f"{name}: D/G took {int(d_updates)}/{int(g_updates)} steps, "
                           f"expected {expected[0]}/{expected[1]}")
    values = [float(v) for v in losses]
    if not all(math.isfinite(v) for v in values):
        raise RuntimeError(f"{name}: non-finite losses {values}")


# -- kgen ------------------------------------------------------------------------------
def worker_kgen(name: str, steps: int, jit=None) -> float:
    # what `kgen train` builds on this backend: the model's defaults (latent 100, width 64, ...; wgan_gp with
    # --arch conv), its default learning rate and optimizers, steps per execution dividing both fits' step counts
    model = harness.kgen_model(name, dict(SPECS[name].options), None, jit, steps=(warmup(), steps),
                               input_shape=(28, 28, CHANNELS))
    rate = time_fit(model, images(), steps, warmup())
    optimizers, logs = model.phase_optimizers, {m.name: m.result() for m in model.metrics}
    check(name, steps, optimizers["discriminator"].iterations.numpy(), optimizers["generator"].iterations.numpy(),
          (logs["d_loss"], logs["g_loss"]))
    return rate


# -- what the Keras references (TensorFlow, JAX) share ------------------------------------
def keras_networks(spec: Spec):
    """kgen's DCGAN generator (tanh included) and discriminator (logit head included) from keras.layers."""
    import keras
    from keras import layers

    def init():
        return keras.initializers.RandomNormal(stddev=INIT_STDDEV)

    def batch_norm():
        return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)

    generator = keras.Sequential([
        keras.Input((LATENT,)),
        layers.Dense(math.prod(START), use_bias=False, kernel_initializer=init()), batch_norm(), layers.ReLU(),
        layers.Reshape(START),
        layers.Conv2DTranspose(FILTERS, 4, strides=2, padding="same", use_bias=False, kernel_initializer=init()),
        batch_norm(), layers.ReLU(),
        layers.Conv2DTranspose(CHANNELS, 4, strides=2, padding="same", activation="tanh", kernel_initializer=init()),
    ], name="generator")
    discriminator = keras.Sequential([
        keras.Input((28, 28, CHANNELS)),
        layers.Conv2D(FILTERS, 4, strides=2, padding="same", kernel_initializer=init()), layers.LeakyReLU(LEAK),
        layers.Conv2D(2 * FILTERS, 4, strides=2, padding="same", kernel_initializer=init()),
        *([batch_norm()] if spec.critic_batch_norm else []), layers.LeakyReLU(LEAK),
        layers.Flatten(), layers.Dense(1),
    ], name="discriminator")
    return generator, discriminator


def keras_optimizer(spec: Spec):
    import keras

    return keras.optimizers.Adam(spec.learning_rate, beta_1=spec.beta_1, beta_2=spec.beta_2)


def d_objective(spec: Spec, real_logits, fake_logits):
    """D's loss before any penalty, in keras.ops (runs as TensorFlow or JAX ops)."""
    from keras import ops

    if spec.objective == "bce":
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))
    return ops.mean(fake_logits) - ops.mean(real_logits)


def g_objective(spec: Spec, fake_logits):
    from keras import ops

    if spec.objective == "bce":
        return ops.mean(ops.softplus(-fake_logits))  # non-saturating
    return -ops.mean(fake_logits)


def penalty_of(input_grads):
    """mean (||grad||_2 - 1)^2 over the batch, from the critic's gradient w.r.t. its input (kgen's formula)."""
    from keras import ops

    flat = ops.reshape(input_grads, (ops.shape(input_grads)[0], -1))
    return ops.mean(ops.square(ops.sqrt(ops.sum(ops.square(flat), axis=1) + 1e-12) - 1.0))


def interpolates(real, fake, eps):
    return eps * real + (1.0 - eps) * fake


# -- Keras: keras-io's train_step on this backend (the bar) -------------------------------------
def keras_phases(spec: Spec) -> list:
    """The D phase (``d_steps`` repeats, fresh noise each, the fake batch held fixed) and the G phase."""
    import keras
    from keras import ops

    def latent(model, batch):
        return keras.random.normal((batch, LATENT), seed=model.seed_generator)

    def d_loss(model, real):
        batch = ops.shape(real)[0]
        fake = ops.stop_gradient(model.net("generator", latent(model, batch)))
        loss = d_objective(spec, model.net("discriminator", real), model.net("discriminator", fake))
        if spec.gp_weight:
            eps = keras.random.uniform((batch, 1, 1, 1), seed=model.seed_generator)
            grads = reference.input_gradient(lambda x: ops.sum(model.net("discriminator", x)),
                                             interpolates(real, fake, eps))
            loss += spec.gp_weight * penalty_of(grads)
        return loss

    def g_loss(model, real):
        return g_objective(spec, model.net("discriminator", model.net("generator", latent(model, ops.shape(real)[0]))))

    return [reference.Phase("discriminator", ("discriminator",), d_loss, repeats=spec.d_steps),
            reference.Phase("generator", ("generator",), g_loss)]


def keras_builders(spec):
    """The hand-written Keras step's networks and optimizers, as the builders reference.fit calls."""

    def networks():
        generator, discriminator = keras_networks(spec)
        return {"generator": generator, "discriminator": discriminator}

    def optimizers():
        return {"discriminator": keras_optimizer(spec), "generator": keras_optimizer(spec)}

    return networks, optimizers


def worker_keras(name: str, steps: int, jit=None) -> float:
    spec = SPECS[name]
    networks, optimizers = keras_builders(spec)
    return reference.fit(networks, keras_phases(spec), optimizers, images(), steps, warmup(), jit)


def worker_keras_io(name: str, steps: int) -> float:
    """keras-io's float32 loop (the cross-backend reference): the same train_step on TensorFlow in float32,
    compiled as keras-io's examples compile (Keras's defaults: one step per execution, no XLA on a CPU)."""
    spec = SPECS[name]
    networks, optimizers = keras_builders(spec)
    return reference.fit(networks, keras_phases(spec), optimizers, images(), steps, warmup(), keras_io=True)


# -- JAX: stateless_call + value_and_grad + stateless_apply, one jitted step per batch ----------
def worker_jax(name: str, steps: int) -> float:
    import jax
    import jax.numpy as jnp

    spec = SPECS[name]
    generator, discriminator = keras_networks(spec)
    d_optimizer, g_optimizer = keras_optimizer(spec), keras_optimizer(spec)
    d_optimizer.build(discriminator.trainable_variables)
    g_optimizer.build(generator.trainable_variables)

    def run(network, params, x):
        """The network in training mode as a pure function: (output, new non-trainable values)."""
        trainable, non_trainable = params
        return network.stateless_call(trainable, non_trainable, x, training=True)

    def d_loss_fn(d_trainable, d_non_trainable, g_params, real, key):
        z_key, eps_key = jax.random.split(key)
        fake, g_non_trainable = run(generator, g_params, jax.random.normal(z_key, (real.shape[0], LATENT)))
        real_logits, d_non_trainable = run(discriminator, (d_trainable, d_non_trainable), real)
        fake_logits, d_non_trainable = run(discriminator, (d_trainable, d_non_trainable), fake)
        loss = d_objective(spec, real_logits, fake_logits)
        if spec.gp_weight:
            x_hat = interpolates(real, fake, jax.random.uniform(eps_key, (real.shape[0], 1, 1, 1)))
            grads = jax.grad(lambda x: jnp.sum(run(discriminator, (d_trainable, d_non_trainable), x)[0]))(x_hat)
            loss += spec.gp_weight * penalty_of(grads)
        return loss, (d_non_trainable, g_non_trainable)

    def g_loss_fn(g_trainable, g_non_trainable, d_params, batch, key):
        fake, g_non_trainable = run(generator, (g_trainable, g_non_trainable), jax.random.normal(key, (batch, LATENT)))
        fake_logits, d_non_trainable = run(discriminator, d_params, fake)
        return g_objective(spec, fake_logits), (g_non_trainable, d_non_trainable)

    @jax.jit
    def train_step(state, real):
        (g_tr, g_nt, g_opt), (d_tr, d_nt, d_opt), key = state
        for _ in range(spec.d_steps):
            key, subkey = jax.random.split(key)
            (d_loss, (d_nt, g_nt)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_tr, d_nt, (g_tr, g_nt),
                                                                                          real, subkey)
            d_tr, d_opt = d_optimizer.stateless_apply(d_opt, grads, d_tr)
        key, subkey = jax.random.split(key)
        (g_loss, (g_nt, d_nt)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_tr, g_nt, (d_tr, d_nt),
                                                                                      real.shape[0], subkey)
        g_tr, g_opt = g_optimizer.stateless_apply(g_opt, grads, g_tr)
        return ((g_tr, g_nt, g_opt), (d_tr, d_nt, d_opt), key), jnp.stack([d_loss, g_loss])

    def player(network, optimizer):
        """A player's state: its trainable and non-trainable values, its optimizer's."""
        variables = (network.trainable_variables, network.non_trainable_variables, optimizer.variables)
        return tuple([v.value for v in vs] for vs in variables)

    holder = {"state": (player(generator, g_optimizer), player(discriminator, d_optimizer), jax.random.key(0))}

    def step(real):
        holder["state"], holder["losses"] = train_step(holder["state"], real)
        return holder["losses"]

    batches = map(jnp.asarray, images().as_numpy_iterator())
    rate = timed(step, batches, steps, lambda losses: losses.block_until_ready(), warmup())
    (_, _, g_opt), (_, _, d_opt), _ = holder["state"]
    # where the step count sits in an optimizer's state (by identity: == on Keras variables compares values)
    at = next(i for i, v in enumerate(g_optimizer.variables) if v is g_optimizer.iterations)
    check(name, steps, d_opt[at], g_opt[at], holder["losses"])
    return rate


# -- PyTorch: nn.Sequential networks, torch.optim.Adam, a Python loop ---------------------------------
def torch_networks(spec: Spec):
    """kgen's DCGAN generator and discriminator as NCHW nn.Sequential; padding 1 gives Keras's 'same' sizes."""
    from torch import nn

    def batch_norm(features, dims):
        return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(features, eps=BN_EPSILON, momentum=1 - BN_MOMENTUM)

    start_channels, start_h, start_w = START[2], START[0], START[1]
    generator = nn.Sequential(
        nn.Linear(LATENT, math.prod(START), bias=False), batch_norm(math.prod(START), 1), nn.ReLU(),
        nn.Unflatten(1, (start_channels, start_h, start_w)),
        nn.ConvTranspose2d(start_channels, FILTERS, 4, stride=2, padding=1, bias=False), batch_norm(FILTERS, 2),
        nn.ReLU(),
        nn.ConvTranspose2d(FILTERS, CHANNELS, 4, stride=2, padding=1), nn.Tanh(),
    )
    discriminator = nn.Sequential(
        nn.Conv2d(CHANNELS, FILTERS, 4, stride=2, padding=1), nn.LeakyReLU(LEAK),
        nn.Conv2d(FILTERS, 2 * FILTERS, 4, stride=2, padding=1),
        *([batch_norm(2 * FILTERS, 2)] if spec.critic_batch_norm else []), nn.LeakyReLU(LEAK),
        nn.Flatten(), nn.Linear(math.prod(START), 1),
    )
    head = discriminator[-1]
    for module in [*generator, *discriminator]:  # DCGAN's N(0, 0.02) kernels (the head keeps its default)
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if module is not head:
                nn.init.normal_(module.weight, 0.0, INIT_STDDEV)
            if module.bias is not None:  # Keras starts biases at zero
                nn.init.zeros_(module.bias)
    return generator, discriminator


def worker_torch(name: str, steps: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    spec = SPECS[name]
    generator, discriminator = torch_networks(spec)
    g_params, d_params = list(generator.parameters()), list(discriminator.parameters())
    betas = (spec.beta_1, spec.beta_2)
    d_optimizer = torch.optim.Adam(d_params, lr=spec.learning_rate, betas=betas)
    g_optimizer = torch.optim.Adam(g_params, lr=spec.learning_rate, betas=betas)
    bce = nn.BCEWithLogitsLoss()
    last = {}  # the last step's losses, for the final check

    def d_objective_torch(real_logits, fake_logits):
        if spec.objective == "bce":
            return bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
        return fake_logits.mean() - real_logits.mean()

    def g_objective_torch(fake_logits):
        if spec.objective == "bce":
            return bce(fake_logits, torch.ones_like(fake_logits))  # non-saturating
        return -fake_logits.mean()

    def gradient_penalty(real, fake):
        eps = torch.rand(real.shape[0], 1, 1, 1)
        x_hat = interpolates(real, fake, eps).requires_grad_(True)
        (grads,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
        norms = torch.sqrt(grads.flatten(1).square().sum(dim=1) + 1e-12)
        return (norms - 1.0).square().mean()

    def step(real):
        batch = real.shape[0]
        for _ in range(spec.d_steps):
            with torch.no_grad():  # G in training mode (its batch norm statistics move), no graph
                fake = generator(torch.randn(batch, LATENT))
            d_loss = d_objective_torch(discriminator(real), discriminator(fake))
            if spec.gp_weight:
                d_loss = d_loss + spec.gp_weight * gradient_penalty(real, fake)
            d_optimizer.zero_grad()
            d_loss.backward()
            d_optimizer.step()
        g_loss = g_objective_torch(discriminator(generator(torch.randn(batch, LATENT))))
        g_optimizer.zero_grad()
        g_loss.backward(inputs=g_params)  # G's gradients only: D's weight gradients are not computed
        g_optimizer.step()
        last["losses"] = torch.stack([d_loss.detach(), g_loss.detach()])
        return last["losses"]

    # NHWC batches of the shared pipeline as NCHW tensors (one channel: the same memory)
    batches = (torch.from_numpy(x).permute(0, 3, 1, 2) for x in images().as_numpy_iterator())
    rate = timed(step, batches, steps, lambda losses: losses.tolist(), warmup())
    check(name, steps, d_optimizer.state[d_params[0]]["step"], g_optimizer.state[g_params[0]]["step"], last["losses"])
    return rate


# The frameworks' own loops (for information); TensorFlow's is the Keras reference itself.
PLAIN = {"jax": worker_jax, "torch": worker_torch}
MODELS = list(SPECS)


def has_reference(name: str) -> bool:
    return True
