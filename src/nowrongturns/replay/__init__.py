"""Dense mode: the segments between checkpoints (segments.py), each replayed alone (stage.py)."""
