"""Numeric precision of a stage's compute: fp32 (strict), tf32, or bf16 autocast.

    apply_precision("bf16")                   # TF32 flags, and deterministic algorithms on
    with autocast("bf16", device):            # around the forward pass and the loss
        loss = task.loss(model(inputs), targets)

Weights, gradients and optimizer state stay float32 in every mode. fp32 turns TF32 off for
matmuls and cuDNN convolutions (cuDNN's default allows it, which on Ampere and later silently
rounds every convolution's inputs to 10 bits of mantissa); tf32 allows it; bf16 runs the forward
pass under autocast to bfloat16 (no loss scaler: bfloat16 has float32's range) and allows TF32
for what stays float32. The train stage uses `train.precision`, recorded in the trajectory; dense
replay uses the trajectory's, to take the same steps; the measure stage `measure.precision`,
strict fp32 unless asked.
"""

from __future__ import annotations

import contextlib
import os

# torch is imported inside the functions: the CLI reads PRECISIONS before it needs torch.
PRECISIONS = ("fp32", "tf32", "bf16")


def apply_precision(precision: str) -> None:
    """Set the process-wide flags of a precision, and deterministic algorithms on."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown; known: {', '.join(PRECISIONS)}")
    allow_tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # for deterministic cuBLAS
    # torch.use_deterministic_algorithms(True) also imports torch._inductor, 2-3 s of every job's
    # start on a laptop CPU, only to set the compiler's own flag; nothing here compiles.
    torch._C._set_deterministic_algorithms(True, warn_only=False)


def autocast(precision: str, device):
    """The context of a forward pass: bfloat16 autocast for bf16, else nothing."""
    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def uses_channels_last(model, device, precision: str) -> bool:
    """Convolutional models on CUDA in tf32 or bf16, where tensor cores want NHWC."""
    import torch

    convolutional = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return device.type == "cuda" and precision != "fp32" and convolutional
