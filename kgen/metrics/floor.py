"""What a perfect generator would score: FID/KID of real images at the generator's sample size.

FID is biased upwards by finite samples, more the fewer there are (Binkowski et al. 2018,
section 2.2; Chong & Forsyth 2020): between two sets drawn from the same distribution it is
about Tr(S) (1/n + 1/m)-ish, not 0. A generator's FID in ``kgen evaluate`` compares n samples
with all m examples of the evaluated split, so the floor to read it against is the same
comparison with n *real* images in place of the samples -- images the evaluated split does not
contain, i.e. the training split.

``real_floor`` (kgen.metrics.report) instead compares two halves of the evaluated split, m/2
against m/2: on a small split (1,000 test images: 500 vs 500 against the generator's 10,000 vs
1,000) its bias is several times the generator's, so the floor comes out too high and a
generator looks closer to "real" than it is. ``matched_real_floor`` is the comparison at the
generator's sizes. KID is unbiased, so its floor is ~0 either way (its spread is what changes).
"""

from __future__ import annotations

import numpy as np

from kgen.metrics.generative import fid, kid


def matched_real_floor(reference_features: np.ndarray, evaluated_features: np.ndarray, n: int, seed: int = 0,
                       kid_subset: int = 1000) -> dict[str, float]:
    """FID and KID between n real examples and the evaluated split: what ``sample_quality`` reports
    for n generated samples, with real images in their place.

    ``reference_features``: classifier features of real images that are *not* in the evaluated split
    (the training split when evaluating on test; the test split when evaluating on train); n of them
    are drawn without replacement (``np.random.default_rng(seed).permutation``), all of them when
    there are fewer. ``evaluated_features``: the features the generator's samples were compared
    with, all of them (as ``sample_quality`` uses them).

    Returns ``fid_real_floor``, ``kid_real_floor``, ``kid_real_floor_std`` and
    ``real_floor_samples`` (the number of reference examples used).
    """
    reference = np.asarray(reference_features, np.float64)
    evaluated = np.asarray(evaluated_features, np.float64)
    if reference is evaluated or np.shares_memory(reference, evaluated):
        raise ValueError("the reference images must not be the evaluated ones: pass the other split's features")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    chosen = reference[np.random.default_rng(seed).permutation(len(reference))[:n]]
    kid_mean, kid_std = kid(chosen, evaluated, subset_size=kid_subset, seed=seed)
    return {"fid_real_floor": fid(chosen, evaluated), "kid_real_floor": kid_mean, "kid_real_floor_std": kid_std,
            "real_floor_samples": float(len(chosen))}


__all__ = ["matched_real_floor"]
