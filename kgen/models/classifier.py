"""A small image classifier, trained by kgen, whose penultimate layer is the feature space
in which ``kgen evaluate`` judges generators (FID, KID) and whose softmax gives the
classifier score (TF-GAN's MNIST metrics use such a domain classifier, not Inception).

conv (keras-io's "Simple MNIST convnet", ~99% on MNIST, with a feature layer): Conv(32, 3) ->
MaxPool(2) -> Conv(64, 3) -> MaxPool(2) -> Flatten -> Dropout(0.25) -> Dense(width) = features ->
Dropout(0.5) -> Dense(classes).
dense: Flatten -> Dense(4 width) -> Dense(width) = features -> Dropout(0.5) -> Dense(classes).
One phase minimises the softmax cross-entropy.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kgen.models import losses
from kgen.nets.cast import float32_cast, float32_output
from kgen.models.contract import Ability, register
from kgen.space import Choice
from kgen.models.base import DATA_RANGES, Option, Phase, PhasedModel, batch_inputs


@register
class Classifier(PhasedModel):
    model_name = "classifier"
    description = "conv classifier: the feature space of FID/KID and the classifier score in `kgen evaluate`"
    family = "classifier"
    abilities = frozenset({Ability.CLASSIFY, Ability.FEATURES})
    search_space = {"width": Choice(64, 128, 256)}
    tuning_objective = "val_accuracy"
    default_steps = 1000  # without --epochs: 28 epochs of the 4,500 offline digits, 3 of Fashion-MNIST
    options = (
        Option("arch", str, "conv", "network type", choices=("conv", "dense")),
        Option("width", int, 128, "width of the feature layer", minimum=2),
        Option("num_classes", int, None, "number of classes (default: the dataset's)", minimum=2,
               from_data="num_classes"),
        Option("data_range", str, "unit", "input scaling, set by the data", choices=DATA_RANGES),
    )
    metric_names = ("loss", "accuracy")

    def __init__(self, input_shape: tuple[int, ...], **kwargs):
        super().__init__(input_shape, **kwargs)
        if self.hparams["num_classes"] is None:
            raise ValueError("a classifier needs labelled data: the dataset has no labels (or pass --num-classes)")
        self.num_classes = self.hparams["num_classes"]
        self.body = self.build_body()
        self.head = keras.Sequential([keras.Input((self.hparams["width"],)), layers.Dropout(0.5),
                                      layers.Dense(self.num_classes), *float32_cast()], name="head")
        self.built = True

    def build_body(self) -> keras.Model:
        width = self.hparams["width"]
        x = keras.Input(self.data_shape)
        if self.hparams["arch"] == "conv":
            if len(self.data_shape) != 3:
                raise ValueError(f"--arch conv needs images of shape (H, W, C), got {self.data_shape}; use --arch dense")
            h = layers.MaxPooling2D(2)(layers.Conv2D(32, 3, activation="relu")(x))
            h = layers.MaxPooling2D(2)(layers.Conv2D(64, 3, activation="relu")(h))
            h = layers.Dropout(0.25)(layers.Flatten()(h))
        else:
            h = layers.Dense(4 * width, activation="relu")(layers.Flatten()(x))
        return keras.Model(x, float32_output(layers.Dense(width, activation="relu")(h)), name="body")

    def features(self, x, training: bool = False):
        """The penultimate layer: the feature space of FID and KID."""
        return self.body(x, training=training)

    def logits(self, x, training: bool = False):
        return self.head(self.features(x, training), training=training)

    def predict_proba(self, x):
        return ops.softmax(self.logits(x))

    def call(self, x, training: bool = False):
        return self.logits(x, training)

    def classification_loss(self, data, training: bool):
        x, labels = batch_inputs(data), data[1]
        logits = self.logits(x, training)
        loss = ops.mean(losses.categorical_nll(labels, logits))
        return loss, {"loss": loss, "accuracy": losses.accuracy(labels, logits)}

    def training_phases(self) -> list[Phase]:
        return [Phase("classification", self.classification_loss, self.trainable_variables, "classifier")]
