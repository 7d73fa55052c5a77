"""Least-squares GAN (Mao et al. 2017, "Least Squares Generative Adversarial Networks").

The discriminator is a regressor with a linear output, not a classifier: with target codes a for
fake and b for real images, and c the value the generator wants D to believe (eq. 2),

    min_D  1/2 E_x[(D(x) - b)^2] + 1/2 E_z[(D(G(z)) - a)^2]
    min_G  1/2 E_z[(D(G(z)) - c)^2]

With b - c = 1 and b - a = 2 (a = -1, b = 1, c = 0) minimising this is minimising the Pearson
chi^2 divergence between p_data + p_g and 2 p_g (section 3.2.2); the 0-1 coding (a = 0, b = c = 1,
eq. 9), which the paper uses in its experiments, is the default here. Unlike the sigmoid
cross-entropy, the least-squares loss keeps penalising fakes that lie on the correct side of the
decision boundary but far from the real data, so the generator's gradients do not vanish.

Everything else (networks, phases, d_steps, sampling, export) is the GAN's.
"""

from __future__ import annotations

from keras import ops

from kgen.models.base import Option
from kgen.models.contract import register
from kgen.models.gan import CONV_GAN_STEPS, GAN, gan_options


@register
class LSGAN(GAN):
    model_name = "lsgan"
    default_steps = CONV_GAN_STEPS  # --arch conv by default
    description = "least-squares GAN (Mao et al.): D regresses real to b and fakes to a, G pulls D(G(z)) to c"
    options = (
        *gan_options(100, "conv"),
        Option("coding", str, "0-1", "targets (a, b, c): 0-1 = (0, 1, 1) as in the paper's experiments, "
               "chi2 = (-1, 1, 0), which minimises the Pearson chi^2 divergence", choices=("0-1", "chi2")),
    )
    CODINGS = {"0-1": (0.0, 1.0, 1.0), "chi2": (-1.0, 1.0, 0.0)}

    def targets(self) -> tuple[float, float, float]:
        """(a, b, c): the fake and real targets of D and the target G sets for its fakes."""
        return self.CODINGS[self.hparams["coding"]]

    def discriminator_objective(self, real_scores, fake_scores):
        """1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] (eq. 2, D's half), and the mean scores."""
        a, b, _ = self.targets()
        loss = 0.5 * ops.mean(ops.square(real_scores - b)) + 0.5 * ops.mean(ops.square(fake_scores - a))
        return loss, {"d_real": ops.mean(real_scores), "d_fake": ops.mean(fake_scores)}

    def generator_objective(self, fake_scores):
        """1/2 E[(D(G(z)) - c)^2] (eq. 2, G's half)."""
        _, _, c = self.targets()
        return 0.5 * ops.mean(ops.square(fake_scores - c))
