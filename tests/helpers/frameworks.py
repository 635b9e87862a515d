"""A few steps of a real PyTorch Lightning Trainer and of a real Hugging Face Trainer on the CPU,
recorded by nowrongturns' callbacks, each also saving its own checkpoints: the digits MLP (a
model the workflow can rebuild by name)."""

from __future__ import annotations

from pathlib import Path

import torch

from nowrongturns.models import build_model
from nowrongturns.tasks.load import load_task

# The run both record: the measure stage rebuilds the model and data from it.
RUN = {"task": "digits", "model": "mlp", "width": 16, "depth": 1, "seed": 0}
BATCH = 32
STEPS = 8
CHECKPOINT = {"dense_first": 3, "every": 2}


class Examples(torch.utils.data.Dataset):
    """The task's training examples with their index: (index, input, target)."""

    def __init__(self, task):
        self.task = task

    def __len__(self) -> int:
        return self.task.train_size

    def __getitem__(self, index: int):
        inputs, targets = self.task.batch(torch.tensor([index]))
        return {"index": index, "x": inputs[0], "labels": targets[0]}


def lightning_fit(out: Path, steps: int = STEPS) -> tuple[Path, list[Path]]:
    """Fit `steps` steps with the callback recording into out/trajectory.h5 and Lightning's
    ModelCheckpoint saving every 2 steps into out/ckpts: (trajectory, .ckpt files)."""
    import lightning.pytorch as pl

    from nowrongturns.integrations.lightning import TrajectoryCallback

    task = load_task(RUN)

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = build_model(RUN, task)

        def training_step(self, batch, batch_idx):
            return task.loss(self.net(batch["x"]), batch["labels"])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    recorder = TrajectoryCallback(
        out / "trajectory.h5",
        RUN,
        checkpoint=CHECKPOINT,
        network="net",
        indices=lambda batch: batch["index"],
    )
    saver = pl.callbacks.ModelCheckpoint(
        dirpath=out / "ckpts", every_n_train_steps=2, save_top_k=-1, filename="{step}"
    )
    loader = torch.utils.data.DataLoader(Examples(task), batch_size=BATCH, shuffle=True)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        callbacks=[recorder, saver],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(Classifier(), loader)
    return out / "trajectory.h5", sorted((out / "ckpts").glob("*.ckpt"))


def hf_train(out: Path, steps: int = STEPS) -> tuple[Path, list[Path]]:
    """Train `steps` steps with the Trainer, the callback recording into out/trajectory.h5 and the
    Trainer saving checkpoint-N/ folders every 2 steps into out/hf: (trajectory, folders)."""
    import transformers

    from nowrongturns.integrations.transformers import TrajectoryCallback

    task = load_task(RUN)

    class Classifier(torch.nn.Module):
        """The run's network, with the loss the Trainer expects from a model."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = build_model(RUN, task)

        def forward(self, x, labels=None, index=None):
            logits = self.net(x)
            return {"loss": task.loss(logits, labels), "logits": logits}

    arguments = transformers.TrainingArguments(
        output_dir=str(out / "hf"),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=0.01,
        save_strategy="steps",
        save_steps=2,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
        logging_strategy="no",
    )
    callback = TrajectoryCallback(out / "trajectory.h5", RUN | {"batch_size": BATCH}, CHECKPOINT)
    model = Classifier()
    # The Trainer's callbacks see the optimizer it was given (one it makes itself, they do not).
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = transformers.Trainer(
        model=model,
        args=arguments,
        train_dataset=Examples(task),
        callbacks=[callback],
        optimizers=(optimizer, None),
    )
    trainer.train()
    return out / "trajectory.h5", sorted((out / "hf").glob("checkpoint-*"))
