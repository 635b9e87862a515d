"""The measure stage (stage.py): the gradients of each checkpoint (gradients.py), their geometry
(stats.py), and a run's measurement cut into jobs (jobs.py).
"""
