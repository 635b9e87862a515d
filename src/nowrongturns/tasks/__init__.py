"""Tasks: the examples of a dataset addressed by index, its split, its loss, its augmentation
and the input pipeline that batches it.
"""
