"""The train stage (stage.py) and what it keeps of a run beside the trajectory (recorder.py)."""
