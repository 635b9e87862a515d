"""Reading the checkpoints a finished training left: one small function per format, each
returning the tensors by name, each error naming the file (and the key).

    read_checkpoint("ckpts/step_100.pt")        # {"0.weight": tensor, ...}
    step_from_name("epoch=0-step=100.ckpt")     # 100

PyTorch files (.pt, .pth, .bin, Lightning's .ckpt) are opened with `torch.load(weights_only=True)`:
a pickle that would construct anything but tensors and plain containers is refused before any of
it runs. safetensors files hold tensors only. A Hugging Face `checkpoint-N/` folder holds one of
`model.safetensors` or `pytorch_model.bin`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

# Where a .pt file that is not a bare state dict keeps it (Lightning: state_dict).
STATE_KEYS = ("state_dict", "model_state_dict", "model")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be imported; the message names the file (and key)."""


def step_from_name(path: str | Path) -> int:
    """The step a checkpoint's name says: `step=N`, `step_N`, `stepN`, `checkpoint-N`, else the
    last number in it."""
    name = Path(path).name
    tagged = re.findall(r"(?:step|checkpoint)[=_-]?(\d+)", name, flags=re.IGNORECASE)
    numbers = tagged or re.findall(r"\d+", Path(name).stem if Path(path).suffix else name)
    if not numbers:
        raise CheckpointError(f"{path}: no step in the name; give the steps instead")
    return int(numbers[-1])


def read_torch(path: Path) -> dict[str, torch.Tensor]:
    """A PyTorch pickle, loaded with weights_only=True; its state dict, bare or under one of
    STATE_KEYS."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message says what the pickle would have built, among advice on loading it
        # unsafely, which is not ours to give.
        lines = [line for line in str(error).splitlines() if "GLOBAL" in line or "global" in line]
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True), which runs none of the code a "
            f"pickle carries: {(lines or str(error).splitlines())[0]}"
        ) from None
    except Exception as error:  # garbage fails anywhere in the unpickler (IndexError, ...)
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from None
    return state_dict_of(loaded, path)


def state_dict_of(loaded, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded PyTorch checkpoint: the dict itself, or its STATE_KEYS entry."""
    if isinstance(loaded, dict):
        for key in STATE_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(
            f"{path}: holds {type(loaded).__name__}, not a state dict (name -> tensor) nor one "
            f"under {', '.join(STATE_KEYS)}"
        )
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: key {key!r} holds {type(value).__name__}, not a tensor; a state dict "
                "maps names to tensors"
            )
    return loaded


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a safetensors file ({error})") from None


def read_hf_folder(path: Path) -> dict[str, torch.Tensor]:
    """A Hugging Face Trainer's checkpoint-N/ folder: its model weights file."""
    for name in HF_WEIGHTS:
        if (path / name).is_file():
            return read_checkpoint(path / name)
    raise CheckpointError(f"{path}: a folder without {' or '.join(HF_WEIGHTS)}")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of one checkpoint, by its form: a folder, safetensors, or a PyTorch file."""
    path = Path(path)
    if path.is_dir():
        return read_hf_folder(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return read_torch(path)
    raise CheckpointError(
        f"{path}: not a checkpoint this reads (.safetensors, {', '.join(TORCH_SUFFIXES)}, or a "
        f"folder holding {' or '.join(HF_WEIGHTS)})"
    )


def matched(tensors: dict[str, torch.Tensor], model: torch.nn.Module, path) -> dict:
    """The checkpoint's tensors under the model's state-dict names: as they are, or with the
    prefix a wrapper added (Lightning's `model.`, DDP's `module.`) taken off; each key missing,
    extra or of another shape named."""
    expected = model.state_dict()
    prefix = _wrapper_prefix(tensors, expected)
    named = {key.removeprefix(prefix): value for key, value in tensors.items()}
    missing = [key for key in expected if key not in named]
    extra = [key for key in named if key not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{path}: its keys do not match the model's: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
            f"{' ...' if len(extra) > 5 else ''}"
        )
    for key, tensor in expected.items():
        if tuple(named[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: key {key!r} has shape {tuple(named[key].shape)}, the model's "
                f"{tuple(tensor.shape)}"
            )
    return named


def _wrapper_prefix(tensors: dict, expected: dict) -> str:
    """The prefix (ending in '.') that every checkpoint key has beyond the model's, or ''."""
    if set(tensors) & set(expected):
        return ""
    first = next(iter(tensors))
    for key in expected:
        if first.endswith("." + key):
            prefix = first[: len(first) - len(key)]
            if all(name.startswith(prefix) for name in tensors):
                return prefix
    return ""
