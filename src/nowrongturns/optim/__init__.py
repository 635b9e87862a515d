"""Optimizers from a run config (optimizers.py), their state as a flat vector (state.py), and the
learning rates they step with (learning_rates.py, without torch).
"""
