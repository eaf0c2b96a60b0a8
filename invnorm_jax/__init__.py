"""invnorm-jax."""
