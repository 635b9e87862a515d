"""A training loop of your own, recorded: five lines added (marked) to a plain PyTorch loop with
its own shuffling, optimizer, weight decay and learning-rate schedule.

    python train.py       # writes recorded/trajectory.h5; then the workflow measures it
"""

import torch
from my_lab import TRAIN, small_mlp

import nowrongturns  # (1)

inputs, targets = (torch.from_numpy(array) for array in TRAIN)
torch.manual_seed(0)
model = small_mlp(inputs.shape[1:], 3, {})
optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-4)
epochs, batch_size = 20, 50
steps = epochs * (len(inputs) // batch_size)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps)

# What the workflow needs to rebuild the model and the data (module:function factories).
run = {"task": "my_lab:spirals", "model": "my_lab:small_mlp", "seed": 0}
with nowrongturns.Recorder(  # (2)
    "recorded/trajectory.h5", model, optimizer, run=run, checkpoint={"dense_first": 5, "every": 10}
) as recorder:
    for epoch in range(epochs):
        for indices in torch.randperm(len(inputs)).split(batch_size):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[indices]), targets[indices])
            loss.backward()
            optimizer.step()
            recorder.step(loss=loss, indices=indices)  # (3) after the step, before the scheduler
            scheduler.step()
        print(f"epoch {epoch}: loss {loss.item():.3f}")
