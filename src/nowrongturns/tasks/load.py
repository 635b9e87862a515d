"""The task a run config names: an embedded, synthetic or local-path task by name, or a
factory's, with the run's augmentation.

    task = load_task({"task": "digits", "seed": 0, ...}).to(device)
"""

from __future__ import annotations

import dataclasses

from nowrongturns.tasks.augment import standard_augmentation
from nowrongturns.tasks.task import Task


def load_task(run: dict) -> Task:
    """The task a run config names (key `task`: a name, or a factory "module:function" called
    with the run), on the CPU; `.to(device)` moves it."""
    # Their loaders build on the classes of this module.
    from nowrongturns.config import factories
    from nowrongturns.tasks import embedded, synthetic, vaihingen
    from nowrongturns.tasks import local as local_data

    name = run["task"]
    tasks = {**embedded.TASKS, **synthetic.TASKS, **local_data.TASKS, "vaihingen": vaihingen.load}
    if factories.is_factory(name):
        task = factories.call("task", name, Task, run)
        task = dataclasses.replace(
            task, name=task.name or name, provenance={"factory": name, **task.provenance}
        )
    elif name in tasks:
        task = tasks[name](run)
    else:
        raise ValueError(f"task {name!r} is unknown; known tasks: {', '.join(tasks)}")
    if run.get("augment", "none") == "standard":
        augmentation = standard_augmentation(task.name)
        task = dataclasses.replace(task, augmentation=augmentation, augment_seed=run["seed"])
    return task
