"""Fitted constants of the analytic training model (JSON, one file per dataset and model) and the
script that fits them to real training runs: ``python -m sfl_env.calibration.fit``."""
