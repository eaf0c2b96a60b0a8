"""The experiment configs that ship with invnorm-jax, one file per experiment.

Each module defines ``get_config(variant="full")`` returning a locked-on-load
``ml_collections.ConfigDict``; :func:`invnorm_jax.pipeline.config.load_config` finds them by name
(``--config digits:quick``). Offline demo tasks: ``digits``, ``mnist1d``, ``co2``;
``digits_deep`` is ``digits`` with 12 binary convolutions instead of 4 (does the gain grow with
depth?). Table I of the paper: ``cifar10_resnet18``, ``speech_m5``, ``co2_lstm``, ``drive_unet``.
"""
