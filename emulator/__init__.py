"""The conditional diffusion emulator: noise schedules, denoiser, samplers, training, checkpoints
and the ``emulator`` command line."""
