"""Demonstrations that combine kgen's models with other computations (each a module with a ``run``
function that writes its figures and numbers to a folder; the CLI's ``kgen demo`` calls them).

- :mod:`kgen.demos.latent_hmc`: Hamiltonian Monte Carlo in the 2-D latent space of an autoencoder
  trained on posterior samples (the "Banana-Biscuit-Doughnut" example).
"""
