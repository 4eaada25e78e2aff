"""Evaluation: edit metrics and figures, benchmark and world evaluation, converters, calibration and tuning."""
