"""Stands in for a training you ran before, with its own code: it left a folder of PyTorch
checkpoints, ckpts/step_<N>.pt (state dicts), as most training scripts do. nowrongturns never
saw this training; the workflow imports the folder (config.yaml) and measures its path.

    python finished_training.py
"""

from pathlib import Path

import torch
from my_lab import TRAIN, small_cnn

images, labels = (torch.from_numpy(array) for array in TRAIN)
torch.manual_seed(0)
model = small_cnn(images.shape[1:], 10, {})
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
Path("ckpts").mkdir(exist_ok=True)
step = 0
for _ in range(8):  # epochs
    for indices in torch.randperm(len(images)).split(64)[:-1]:
        if step % 20 == 0:
            torch.save(model.state_dict(), f"ckpts/step_{step}.pt")
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images[indices]), labels[indices]).backward()
        optimizer.step()
        step += 1
torch.save(model.state_dict(), f"ckpts/step_{step}.pt")
print(f"{step} steps, {len(list(Path('ckpts').glob('*.pt')))} checkpoints in ckpts/")
