"""Adversarial autoencoders (Makhzani et al. 2016), in the paper's four modes.

An autoencoder whose aggregated posterior q(z) = E_x q(z|x) is matched to a prior
p(z) by a GAN played on the codes (section 2): a discriminator D learns to tell
prior draws from codes, and the encoder, as the generator, learns to fool it.
Each batch trains in phases (section 2, "Training"):

1. reconstruction: encoder + decoder minimise -log p(x | decoder(z)), z = encoder(x);
2. regularization, discriminator: D's variables minimise
       -E_{z~p}[log D(z)] - E_x[log(1 - D(encoder(x)))]      (the GAN value, eq. 1)
3. regularization, generator: the encoder's variables minimise -E_x[log D(encoder(x))]
   (the non-saturating form), times --adversarial-weight (clustering: plus
   --marginal-entropy times KL(batch marginal of y || uniform), see ``marginal_kl``);
4. semi-supervised only, classification: the encoder's label head minimises the
   cross-entropy on a labelled mini-batch (section 5).

Modes (--mode):
- unsupervised: z ~ --prior (gaussian, a mixture of 2-D Gaussians, a swiss roll; see
  ``priors.py``). --conditional-prior: the label picks the mixture component (swiss-roll
  segment) and D also sees the one-hot label (section 2.3, Figure 4).
- supervised: the decoder also gets the one-hot label, so z needs only carry style
  (section 4, Figure 6); ``sampling.style_grid`` shows style x class.
- semi-supervised: the encoder outputs a categorical y = softmax(logits) and a style z;
  the decoder gets [y, z]; one discriminator pushes y to a one-hot categorical, another z
  to N(0, I) (section 5, Figure 8); plus the classification phase on --labels examples.
- clustering: as semi-supervised without labels; y has --clusters categories and each
  category is a cluster (section 6). By default the generator phase also pushes the batch's
  cluster frequencies to uniform (--marginal-entropy, see ``marginal_kl``): without it the
  encoder puts every image in one or two clusters. 0 gives the paper's objective.

The paper's training recipe (its Appendix) is a set of options: --depth 2 (two hidden ReLU layers
each way), --input-noise (Gaussian noise on the encoder's input in training steps only; the
reconstruction target stays the clean x), --optimizer momentum (SGD, momentum 0.9) with a learning
rate per phase (--regularization-rate, --classification-rate: multiples of --learning-rate and of
its --lr-schedule). --supervised-only trains the classification phase alone: the same encoder and
label head on the same labelled examples, the baseline the semi-supervised error is judged against.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from kgen.models import losses, priors
from kgen.models.ae import AE
from kgen.models import conditions
from kgen.models.contract import Ability, register
from kgen.space import AE_WIDTH, Choice, log_range
from kgen.models.base import Option, Phase, Rule, batch_inputs, scaled_rate
from kgen.nets import gan as gan_nets

MODES = ("unsupervised", "supervised", "semi-supervised", "clustering")
# Modes whose encoder has a categorical head y (and whose decoder takes y).
CATEGORICAL_MODES = ("semi-supervised", "clustering")
OPTIMIZERS = ("adam", "momentum")


@register
class AAE(AE):
    model_name = "aae"
    description = ("adversarial autoencoder: a discriminator pushes the codes to a prior; "
                   "--mode unsupervised|supervised|semi-supervised|clustering")
    family = "aae"
    abilities = frozenset({Ability.RECONSTRUCT, Ability.ENCODE, Ability.DECODE, Ability.GENERATE, Ability.SAMPLE, Ability.CONDITIONAL, Ability.LABELLED_GENERATOR, Ability.LABELLED_RECONSTRUCTION, Ability.CLASSIFY, Ability.CLUSTER, Ability.CODE_PRIOR})
    search_space = {"hidden": AE_WIDTH, "disc_width": Choice(128, 256, 512), "adversarial_weight": log_range(0.1, 10.0)}
    options = (
        Option("mode", str, "unsupervised", "what the labels do (see docs/models.md)", choices=MODES),
        Option("prior", str, "gaussian", "p(z) of the (style) code", choices=priors.PRIORS),
        Option("latent_dim", int, None, "size of the (style) code z (default: 2 for mixture and swiss-roll, else 8)",
               minimum=1),
        *(o for o in AE.options if o.name in ("arch", "hidden", "loss")),
        Option("disc_width", int, 256, "discriminators: Dense(2w) -> Dense(w) -> logit, LeakyReLU(0.2)", minimum=1),
        Option("adversarial_weight", float, 1.0, "weight of the encoder's adversarial (prior-matching) loss",
               minimum=0.0),
        Option("num_classes", int, None, "number of classes (default: the dataset's)", minimum=2,
               from_data="num_classes"),
        Option("labels", str, "100", "semi-supervised: labelled training examples, balanced per class: N or 'all'",
               form="count_or_all"),
        Option("clusters", int, 16, "clustering: number of clusters (categories of y)", minimum=2),
        Option("marginal_entropy", float, None,
               "clustering and semi-supervised: weight of log K - H(batch mean of q(y|x)) in the generator phase, "
               "which keeps every category in use (default: 5 clustering, where 0, the paper's objective, collapses "
               "to one or two clusters; 0 semi-supervised)", minimum=0.0),
        Option("conditional_prior", bool, False, "the label picks the prior's mixture component / swiss-roll segment"),
        Option("depth", int, 1, "hidden layers of the dense encoder and decoder, each --hidden wide (the paper's "
               "semi-supervised and clustering networks: 2 x 1000)", minimum=1),
        Option("input_noise", float, 0.0, "std of the Gaussian noise added to the encoder's input in training steps "
               "(every phase; never when encoding for evaluation); the paper's semi-supervised MNIST recipe: 0.3",
               minimum=0.0),
        Option("optimizer", str, "adam", "the phases' optimizers: adam (beta_1 0.5 in the adversarial game) or "
               "momentum (SGD with momentum 0.9, the paper's)", choices=OPTIMIZERS),
        Option("regularization_rate", float, 1.0, "learning rate of the adversarial phases (discriminator and "
               "generator), as a multiple of --learning-rate (and of its --lr-schedule)", minimum=0.0, exclusive=True),
        Option("classification_rate", float, 1.0, "semi-supervised: learning rate of the classification phase, as a "
               "multiple of --learning-rate (and of its --lr-schedule)", minimum=0.0, exclusive=True),
        Option("supervised_only", bool, False, "semi-supervised: train the classification phase alone (the encoder "
               "and label head on the --labels examples, no unlabelled data): the supervised baseline of the same "
               "network"),
        *(o for o in AE.options if o.name == "data_range"),
    )
    rules = (
        Rule({"conditional_prior": (True,)}, "--conditional-prior needs a prior with components: --prior mixture or "
             "swiss-roll", require={"prior": priors.PLANAR_PRIORS}),
        Rule({"conditional_prior": (True,)}, "--conditional-prior is for --mode unsupervised or supervised, not {mode}",
             require={"mode": ("unsupervised", "supervised")}),
        Rule({"prior": priors.PLANAR_PRIORS}, "--prior {prior} is a 2-D prior: use --latent-dim 2 (got {latent_dim})",
             require={"latent_dim": (None, 2)}),
        Rule({"supervised_only": (True,)}, "--supervised-only is the baseline of --mode semi-supervised, not {mode}",
             require={"mode": ("semi-supervised",)}),
    )
    regularized = True  # the adversarial term: overcomplete codes are allowed
    default_learning_rate = 1e-3

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        if kwargs.get("latent_dim") is None:
            kwargs["latent_dim"] = 2 if kwargs.get("prior", "gaussian") in priors.PLANAR_PRIORS else 8
        super().__init__(input_shape, **kwargs)  # AE: the encoder (z and y's logits) and decoder
        hp = self.hparams
        self.code_discriminator = self._discriminator(
            self.latent_dim + (self.label_count if hp["conditional_prior"] else 0), "code_discriminator")
        self.category_discriminator = (
            self._discriminator(self.categories, "category_discriminator") if self.categories else None)
        self.labelled_examples = self._labelled_examples()
        if self.labelled_examples:
            # The labelled subset lives in the model (saved with it, restored on resume);
            # `kgen train` fills it once, balanced per class (``set_labelled``).
            self.labelled_images = self.add_weight(shape=(self.labelled_examples, *self.data_shape),
                                                   initializer="zeros", trainable=False, name="labelled_images")
            self.labelled_labels = self.add_weight(shape=(self.labelled_examples,), initializer="zeros",
                                                   dtype="int32", trainable=False, name="labelled_labels")
        self.built = True

    def _discriminator(self, inputs: int, name: str) -> keras.Model:
        """An MLP from a code to one logit (the paper's discriminators are two-layer MLPs)."""
        width = self.hparams["disc_width"]
        body = gan_nets.dense_discriminator((inputs,), width, name=f"{name}_body")
        return keras.Sequential([keras.Input((inputs,)), body, gan_nets.head(width, 1, f"{name}_head")], name=name)

    # -- what the options mean ------------------------------------------------------
    @property
    def label_count(self) -> int:
        """The dataset's classes; the modes that use labels need them."""
        count = self.hparams["num_classes"]
        if count is None:
            if self.hparams["mode"] == "unsupervised" and not self.hparams["conditional_prior"]:
                return 10  # only the mixture's number of components
            raise ValueError(f"aae --mode {self.hparams['mode']}"
                             f"{' --conditional-prior' if self.hparams['conditional_prior'] else ''} needs labelled "
                             "data: the dataset has no labels (or pass --num-classes)")
        return count

    @property
    def categories(self) -> int:
        """K, the size of the categorical code y (0 when the encoder has no label head)."""
        mode = self.hparams["mode"]
        if mode == "semi-supervised":
            return self.label_count
        return self.hparams["clusters"] if mode == "clustering" else 0

    @property
    def num_classes(self) -> int | None:
        """What samples can be drawn for (``sampling.is_conditional``): classes, clusters, or None."""
        mode = self.hparams["mode"]
        if mode in CATEGORICAL_MODES:
            return self.categories
        if mode == "supervised" or self.hparams["conditional_prior"]:
            return self.label_count
        return None

    def active_abilities(self) -> frozenset[Ability]:
        """What the mode makes of the AAE: every mode reconstructs, encodes, decodes, samples and
        pushes its codes to a prior; the label modes decode from a label code (a style grid
        separates style from class), the supervised decoder needs the true label to reconstruct,
        the semi-supervised head classifies and the clustering head clusters."""
        mode = self.hparams["mode"]
        common = {Ability.RECONSTRUCT, Ability.ENCODE, Ability.DECODE, Ability.GENERATE, Ability.SAMPLE,
                  Ability.CODE_PRIOR}
        if self.num_classes is not None:
            common.add(Ability.CONDITIONAL)
        if mode != "unsupervised":
            common.add(Ability.LABELLED_GENERATOR)
        common.add({"supervised": Ability.LABELLED_RECONSTRUCTION, "semi-supervised": Ability.CLASSIFY,
                    "clustering": Ability.CLUSTER}.get(mode, Ability.RECONSTRUCT))
        return frozenset(common)

    @property
    def generator_takes_labels(self) -> bool:
        return Ability.LABELLED_GENERATOR in self.active_abilities()

    @property
    def metric_names(self) -> tuple[str, ...]:
        if self.supervised_only:
            return ("loss", "classification_loss", "accuracy")  # loss: the classification loss
        names = ("loss", "d_loss", "g_loss", "d_prior", "d_codes")
        if self.categories:
            names += ("d_prior_y", "d_codes_y")
        if self.mode_is("semi-supervised"):
            names += ("classification_loss", "accuracy")
        if self.balances_clusters:
            names += ("marginal_kl",)
        return names

    @property
    def balances_clusters(self) -> bool:
        """Does the generator phase add the marginal term (``marginal_kl``)?"""
        return self.hparams["mode"] in CATEGORICAL_MODES and self.marginal_weight > 0

    @property
    def marginal_weight(self) -> float:
        """--marginal-entropy, or its default for the mode (5 clustering, 0 semi-supervised)."""
        weight = self.hparams["marginal_entropy"]
        return weight if weight is not None else (5.0 if self.mode_is("clustering") else 0.0)

    @property
    def supervised_only(self) -> bool:
        """The supervised baseline: the classification phase alone (--supervised-only)."""
        return bool(self.hparams["supervised_only"])

    def mode_is(self, mode: str) -> bool:
        return self.hparams["mode"] == mode

    def _labelled_examples(self) -> int | None:
        """How many labelled examples the semi-supervised model keeps (None: every batch is labelled)."""
        if not self.mode_is("semi-supervised"):
            return None
        if self.hparams["labels"] == "all":  # its form is checked with the options
            return None
        value = int(self.hparams["labels"])
        if value < self.label_count:
            raise ValueError(f"--labels {value} is fewer than one example per class ({self.label_count} classes)")
        return value

    def encoder_outputs(self) -> int:
        return self.categories + self.latent_dim  # y's logits, then z

    def decoder_inputs(self) -> int:
        return self.latent_dim + (self.categories or (self.label_count if self.mode_is("supervised") else 0))

    def default_optimizers(self, learning_rate) -> dict[str, keras.optimizers.Optimizer]:
        """One optimizer per phase at --learning-rate (a float or the --lr-schedule), the adversarial
        phases' scaled by --regularization-rate and the classification phase's by --classification-rate.

        adam: beta_1 = 0.5 in the adversarial game (as for DCGAN). momentum: SGD with momentum 0.9 in
        every phase, the paper's optimizer (Makhzani et al. 2016, Appendix: a rate per phase, the
        regularization and classification phases' larger than the reconstruction phase's)."""
        hp = self.hparams
        rates = {"autoencoder": learning_rate,
                 "discriminator": scaled_rate(learning_rate, hp["regularization_rate"]),
                 "generator": scaled_rate(learning_rate, hp["regularization_rate"]),
                 "classifier": scaled_rate(learning_rate, hp["classification_rate"])}
        keys = dict.fromkeys(p.optimizer for p in self.phases)
        if hp["optimizer"] == "momentum":
            return {key: keras.optimizers.SGD(rates[key], momentum=0.9) for key in keys}
        beta_1 = {"discriminator": 0.5, "generator": 0.5}
        return {key: keras.optimizers.Adam(rates[key], beta_1=beta_1.get(key, 0.9)) for key in keys}

    # -- the maps ---------------------------------------------------------------------
    def encoder_input(self, x, training: bool):
        """What the encoder reads: x, plus N(0, --input-noise^2) noise in training steps (the paper's
        semi-supervised recipe corrupts the encoder's input; the reconstruction target stays the clean x,
        as in a denoising autoencoder). Evaluation and encoding for use (training=False) see x."""
        sigma = self.hparams["input_noise"]
        if not training or sigma <= 0:
            return x
        x = ops.convert_to_tensor(x)
        return ops.add(x, sigma * keras.random.normal(ops.shape(x), dtype=x.dtype, seed=self.seed_generator))

    def encode_parts(self, x, training: bool = False):
        """(z, logits of y); the logits are None in the modes without a label head."""
        h = self.encoder(self.encoder_input(x, training), training=training)
        if not self.categories:
            return h, None
        return h[:, self.categories :], h[:, : self.categories]

    def encode(self, x, training: bool = False):
        """The (style) code z."""
        return self.encode_parts(x, training)[0]

    def predict_proba(self, x):
        """q(y | x), the categorical head (classes for semi-supervised, clusters for clustering)."""
        if not self.categories:
            raise ValueError(f"aae --mode {self.hparams['mode']} has no label head")
        return ops.softmax(self.encode_parts(x)[1])

    def label_code(self, logits, condition):
        """The label code the decoder gets besides z: the given one-hot label (supervised),
        q(y|x) = softmax(logits) (semi-supervised, clustering), or None (unsupervised)."""
        if self.mode_is("supervised"):
            return condition
        return None if logits is None else ops.softmax(logits)

    def decoder_input(self, z, condition):
        """[z, label code] for the modes whose decoder takes one."""
        if not self.generator_takes_labels:
            return z
        if condition is None:
            raise ValueError(f"the decoder of aae --mode {self.hparams['mode']} needs a label (--label)")
        return ops.concatenate([z, ops.cast(condition, z.dtype)], axis=-1)

    def decode(self, z, condition=None, training: bool = False):
        return self.output_activation(self.decoder(self.decoder_input(z, condition), training=training))

    def reconstruct(self, x, condition=None, training: bool = False):
        """x -> z (and y) -> x_hat. The supervised model's decoder also takes the true label, as the
        one-hot ``condition`` (``condition_of_labels``); the other modes ignore it."""
        z, logits = self.encode_parts(x, training)
        if self.mode_is("supervised") and condition is None:
            raise ValueError("aae --mode supervised reconstructs from the image and its label")
        return self.decode(z, self.label_code(logits, condition), training)

    def call(self, inputs, training: bool = False):
        """Reconstructions; the supervised model takes (images, one-hot labels)."""
        if self.mode_is("supervised"):
            x, condition = inputs
            return self.reconstruct(x, condition, training=training)
        return self.reconstruct(inputs, training=training)

    # -- prior and sampling -------------------------------------------------------------
    def sample_prior(self, n, labels=None, seed=None):
        """n draws of p(z); ``labels`` pick the components under --conditional-prior."""
        if not self.hparams["conditional_prior"]:
            labels = None
        seed = keras.random.SeedGenerator(seed) if isinstance(seed, int) else (seed or self.seed_generator)
        return priors.sample(self.hparams["prior"], n, self.latent_dim, self.label_count, labels, seed)

    def sample_latent(self, n: int, seed: int | None = None):
        """z from the prior (its marginal under --conditional-prior)."""
        return self.sample_prior(n, seed=seed)

    def condition_of_labels(self, n: int, labels):
        if self.num_classes is None:
            if labels is not None:
                raise ValueError("aae --mode unsupervised draws without labels; --label needs --conditional-prior "
                                 "or another --mode")
            return None
        return conditions.one_hot_labels(n, labels, self.num_classes)

    def generate(self, latent, condition=None, training: bool = False):
        """Decoded images at given codes; ``condition`` (one-hot) for the modes whose decoder takes a label."""
        return self.decode(latent, condition if self.generator_takes_labels else None, training)

    def sample(self, n: int, seed: int | None = None, labels=None):
        """n images decoded from prior draws; conditional models draw for ``labels`` (default 0, 1, ...;
        under --conditional-prior alone, without labels: from the prior's marginal)."""
        if labels is None and not self.generator_takes_labels:
            return self.generate(self.sample_latent(n, seed))  # the marginal of a label-conditioned prior
        condition = self.condition_of_labels(n, labels)
        if condition is None:
            return self.generate(self.sample_latent(n, seed))
        classes = ops.argmax(condition, axis=-1)
        return self.generate(self.sample_prior(n, labels=classes, seed=seed), condition)

    # -- the discriminators --------------------------------------------------------------
    @staticmethod
    def logit_of(discriminator: keras.Model, inputs, training: bool):
        """A discriminator's logit: its body, then its head (``_discriminator``). The same function as
        calling the Sequential that holds them, one level of Keras's call machinery shorter: on PyTorch,
        whose eager steps pay that machinery on every call, the nested call cost the AAE's training step
        about 15% (three discriminator calls per batch)."""
        body, head = discriminator.layers
        return head(body(inputs, training=training), training=training)[:, 0]

    def discriminate_codes(self, z, labels, training: bool):
        """D's logit for codes z (with the one-hot label under --conditional-prior)."""
        if self.hparams["conditional_prior"]:
            z = ops.concatenate([z, ops.one_hot(ops.cast(labels, "int32"), self.label_count)], axis=-1)
        return self.logit_of(self.code_discriminator, z, training)

    def discriminator_variables(self) -> list:
        variables = self.code_discriminator.trainable_variables
        if self.category_discriminator is not None:
            variables = variables + self.category_discriminator.trainable_variables
        return variables

    # -- the phases ------------------------------------------------------------------------
    def reconstruction_loss(self, data, training: bool):
        x = batch_inputs(data)
        z, logits = self.encode_parts(x, training)
        given = ops.one_hot(ops.cast(data[1], "int32"), self.label_count) if self.mode_is("supervised") else None
        condition = self.label_code(logits, given)
        reconstruction = ops.mean(self.reconstruction_nll(x, self.decoder(self.decoder_input(z, condition),
                                                                          training=training)))
        return reconstruction, {"loss": reconstruction}

    def discriminator_loss(self, data, training: bool):
        x = batch_inputs(data)
        n = ops.shape(x)[0]
        labels = data[1] if self.hparams["conditional_prior"] else None
        z, logits = self.encode_parts(x, training)
        prior_logits = self.discriminate_codes(self.sample_prior(n, labels), labels, training)
        code_logits = self.discriminate_codes(ops.stop_gradient(z), labels, training)
        loss = losses.discriminator_loss(prior_logits, code_logits)
        metrics = {"d_prior": ops.mean(ops.sigmoid(prior_logits)), "d_codes": ops.mean(ops.sigmoid(code_logits))}
        if self.category_discriminator is not None:
            one_hot = priors.categorical(n, self.categories, self.seed_generator)
            prior_y = self.logit_of(self.category_discriminator, one_hot, training)
            code_y = self.logit_of(self.category_discriminator, ops.stop_gradient(ops.softmax(logits)), training)
            loss = loss + losses.discriminator_loss(prior_y, code_y)
            metrics.update(d_prior_y=ops.mean(ops.sigmoid(prior_y)), d_codes_y=ops.mean(ops.sigmoid(code_y)))
        return loss, {"d_loss": loss, **metrics}

    def marginal_kl(self, logits):
        """KL(q(y) || Cat(1/K)) = log K - H(q(y)) for the batch's marginal q(y) = mean_i softmax(logits_i).

        Why the clustering mode needs it. D_y judges one y at a time, so it sees "is y one-hot?"
        directly but "are the categories used equally often?" only as rare vertices scoring high.
        At the start every y is near the centre of the simplex, where D_y is close to linear, so
        the generator's gradient -d log D_y(y)/dy is the same vector for every image: the encoder
        sharpens all of them towards the same vertex within the first epoch. Once there the softmax
        is saturated (its Jacobian diag(y) - y y^T vanishes at a vertex), D_y's correct verdict that
        the other vertices are the real ones no longer reaches the logits, and one or two clusters
        stay in use for good (82-91% clustering error on the bundled MNIST digits instead of the
        paper's 9.55%; giving D_y more, e.g. the batch mean of y as an extra input, only makes D_y
        more certain, the encoder still cannot move).

        This term matches the one statistic D_y misses, the marginal of y, to the prior's marginal
        in closed form: it is the marginal-entropy term of CatGAN (Springenberg 2016, "Unsupervised
        and semi-supervised learning with categorical generative adversarial networks") and of
        IMSAT (Hu et al. 2017, "Learning discrete representations via information maximizing
        self-augmented training"), written as a KL to the uniform prior so that it is 0 at the optimum
        of the AAE's game (the aggregated posterior of y equal to the categorical prior). Its
        gradient d/dy_i = (log q(y) + 1) / n pushes every image away from over-used clusters before
        the softmax saturates. Computed in log space: log q(y)_k = logsumexp_i log softmax_ik - log n.
        """
        n = ops.cast(ops.shape(logits)[0], logits.dtype)
        log_marginal = ops.logsumexp(ops.log_softmax(logits, axis=-1), axis=0) - ops.log(n)
        entropy = -ops.sum(ops.exp(log_marginal) * log_marginal)
        return math.log(self.categories) - entropy

    def generator_loss(self, data, training: bool):
        x = batch_inputs(data)
        labels = data[1] if self.hparams["conditional_prior"] else None
        z, logits = self.encode_parts(x, training)
        loss = losses.generator_loss(self.discriminate_codes(z, labels, training))
        if self.category_discriminator is not None:
            loss = loss + losses.generator_loss(self.logit_of(self.category_discriminator, ops.softmax(logits), training))
        total, metrics = self.hparams["adversarial_weight"] * loss, {"g_loss": loss}
        if self.balances_clusters:
            kl = self.marginal_kl(logits)
            total = total + self.marginal_weight * kl
            metrics["marginal_kl"] = kl
        return total, metrics

    def labelled_batch(self, data, training: bool):
        """Training: a random mini-batch of the stored labelled subset (with --labels all, the batch
        itself); validation: the held-out batch with its labels, so val_accuracy is the test accuracy."""
        if not (training and self.labelled_examples):
            return batch_inputs(data), data[1]
        index = keras.random.randint((ops.shape(batch_inputs(data))[0],), 0, self.labelled_examples,
                                     seed=self.seed_generator)
        return ops.take(self.labelled_images, index, axis=0), ops.take(self.labelled_labels, index, axis=0)

    def classification_loss(self, data, training: bool):
        x, labels = self.labelled_batch(data, training)
        logits = self.encode_parts(x, training)[1]
        loss = ops.mean(losses.categorical_nll(labels, logits))
        metrics = {"classification_loss": loss, "accuracy": losses.accuracy(labels, logits)}
        return loss, ({"loss": loss, **metrics} if self.supervised_only else metrics)

    def set_labelled(self, images, labels) -> None:
        """Store the labelled subset the classification phase draws from."""
        self.labelled_images.assign(ops.convert_to_tensor(images, "float32"))
        self.labelled_labels.assign(ops.convert_to_tensor(labels, "int32"))

    def training_phases(self) -> list[Phase]:
        classification = Phase("classification", self.classification_loss, self.encoder.trainable_variables,
                               "classifier")
        if self.supervised_only:
            return [classification]
        autoencoder = self.encoder.trainable_variables + self.decoder.trainable_variables
        phases = [
            Phase("reconstruction", self.reconstruction_loss, autoencoder, "autoencoder"),
            Phase("discriminator", self.discriminator_loss, self.discriminator_variables(), "discriminator"),
            Phase("generator", self.generator_loss, self.encoder.trainable_variables, "generator"),
        ]
        if self.mode_is("semi-supervised"):
            phases.append(classification)
        return phases
