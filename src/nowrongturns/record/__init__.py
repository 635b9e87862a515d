"""A trajectory from any training: the recorder a user's loop calls (and the train stage's own
step log beneath it), and checkpoints a finished training left, imported.
"""
