"""The paper's pipeline: configs, training and evaluation jobs, results, the claims report, the CLI.

It uses the library (``invnorm_jax.functional``, ``nn``, ``models``, ``faults``, ``metrics``,
``ood``, ``data``, ``train``, ``checkpoint``) and is never imported by it: a config becomes
library objects here, at the pipeline's edge. docs/architecture.md describes both layers.
"""
