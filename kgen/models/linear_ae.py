"""Linear autoencoder: h = W1 x + b1, x_hat = W2 h + b2, squared error.

Baldi & Hornik (1989): every local minimum of the squared error is global, and
at it the decoder's column space (the span of W2's k columns) is the top-k
principal subspace of the (centred) data -- the AE learns PCA up to an
invertible linear map of the code. ``kgen evaluate`` reports the principal
angles between the two subspaces.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kgen import nets
from kgen.models.ae import AE
from kgen.models.contract import Ability, register
from kgen.space import Choice
from kgen.models.base import Option


@register
class LinearAE(AE):
    model_name = "linear_ae"
    description = "linear autoencoder with squared error: its decoder spans the top-k PCA subspace"
    abilities = frozenset({Ability.RECONSTRUCT, Ability.ENCODE, Ability.DECODE, Ability.PRINCIPAL_SUBSPACE})
    search_space = {"latent_dim": Choice(8, 16, 32)}
    options = (
        Option("latent_dim", int, 16, "k, the number of principal directions", minimum=1),
        *(o for o in AE.options if o.name == "data_range"),
    )

    def build_networks(self) -> tuple[keras.Model, keras.Model]:
        return (nets.encoder("shallow", self.data_shape, self.latent_dim, hidden=0),
                nets.decoder("shallow", self.latent_dim, self.data_shape, hidden=0))

    def choose_loss(self) -> str:
        return "mse"

    def output_activation(self, logits):
        return logits  # linear in data space whatever the data range

    def decoder_basis(self) -> np.ndarray:
        """The decoder's k directions as columns of a (inputs x k) matrix."""
        return ops.convert_to_numpy(self.decoder.layers[1].kernel).T
