"""Slurm job templates for the four kinds of work (simulate, train, upsample, validate) and the
renderer that fills them in. The rendered scripts run the same ``emulator`` commands users run
by hand."""
from jobs.render import KINDS, JobOptions, render

__all__ = ["KINDS", "JobOptions", "render"]
