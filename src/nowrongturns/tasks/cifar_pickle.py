"""CIFAR's batch files read without running their code: a restricted unpickler.

The CIFAR releases are Python pickles, and `pickle.load` calls whatever callable a file names: a
`data_batch_1` from a shared drive could run anything in the train job. This unpickler resolves
only the few globals a CIFAR batch needs (numpy's array and dtype reconstruction, and the codec
call that Python 3 pickles of bytes use), and stops at any other, naming the file and the global,
before any of the file's code runs.

    batch = load_cifar_batch(Path("cifar-10-batches-py/data_batch_1"), "cifar10")
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np

from nowrongturns.tasks.task import DataLayoutError


class UnsafePickleError(DataLayoutError):
    """A pickle that names a global a CIFAR batch never holds; nothing of it was run."""


class _ArrayClass:
    """Stands for numpy.ndarray in a pickle: the class that `_reconstruct` is given, which the
    pickle may not call itself (ndarray(shape) would allocate whatever shape it claims)."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("numpy.ndarray called directly, not through _reconstruct")


_ARRAY_CLASS = _ArrayClass()


def _reconstruct(subtype, shape, dtype):
    """numpy's own first step of unpickling an array: an empty array of the pickle's dtype,
    filled by __setstate__ from the pickle's bytes. A pickle claiming any other shape here would
    allocate it, so it is refused."""
    if subtype is not _ARRAY_CLASS or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"an array reconstructed as {subtype!r} of shape {shape!r}")
    return np.ndarray((0,), dtype)


def _frombuffer(buffer, dtype, shape, order):
    """numpy's protocol-5 array: the pickle's bytes viewed as the array (no allocation)."""
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _latin1(text, encoding="latin1"):
    """How Python 3 pickles bytes at protocol 2: _codecs.encode(text, 'latin1'); any other
    codec (zlib, base64, ...) is no part of it."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with the codec {encoding!r}")
    return codecs.encode(text, "latin1")


# (module, name) -> what it resolves to: every global a CIFAR batch pickle holds, from the
# official Python 2 release (numpy.core) to a pickle written today (numpy._core, protocol 5).
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _ARRAY_CLASS,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1,
}


# The pure-Python unpickler: it keeps its memo in a dict, where the C one grows a list to any
# index a pickle names (an 8-byte index allocates gigabytes), and reads no more than is there.
class _CifarUnpickler(pickle._Unpickler):
    def __init__(self, file, path: Path, task: str):
        super().__init__(file, encoding="latin1")  # Python 2's str, as torchvision reads them
        self.path, self.task = path, task

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[module, name]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"{self.task}: {self.path} asks to load the global {module}.{name}, which a CIFAR "
                "batch never holds; refused before running any code of the file (a CIFAR batch "
                "holds dicts, lists, bytes, str, int and numpy arrays)"
            ) from None

    def load_build(self):
        """BUILD (__setstate__) only on what numpy's reconstruction made, never on the globals
        themselves (which would keep what a file set on them for the next file)."""
        if not isinstance(self.stack[-2], np.ndarray | np.dtype):
            raise pickle.UnpicklingError(f"BUILD on {type(self.stack[-2]).__name__}")
        super().load_build()

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.task}: {self.path} holds a persistent id, refused")


def load_cifar_batch(path: Path, task: str) -> dict:
    """The dict a CIFAR pickle holds, its keys str; errors name the file."""
    data = path.read_bytes()  # whole: the unpickler then never reads past what the file holds
    try:
        content = _CifarUnpickler(io.BytesIO(data), path, task).load()
    except UnsafePickleError:
        raise
    except RecursionError as error:  # nesting deep enough to exhaust Python's stack
        raise DataLayoutError(f"{task}: {path} is not a CIFAR batch ({error})") from None
    except Exception as error:  # a malformed pickle fails in many ways, each of them refused
        raise DataLayoutError(
            f"{task}: {path} is not a readable CIFAR pickle ({error!r})"
        ) from None
    if not isinstance(content, dict) or not all(isinstance(key, str) for key in content):
        raise DataLayoutError(f"{task}: {path} holds {type(content).__name__}, not a CIFAR dict")
    return content


def cifar_batch_arrays(
    path: Path, task: str, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 3, 32, 32] and int64 labels of one CIFAR batch file, checked against
    each other before anything is reshaped; errors name the file and the field."""
    batch = load_cifar_batch(path, task)
    images, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        what = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else images
        raise DataLayoutError(f"{task}: {path} field 'data' is {what!r}, not uint8 [N, 3072]")
    if images.shape[1] != 3 * 32 * 32:
        raise DataLayoutError(
            f"{task}: {path} field 'data' has rows of {images.shape[1]} values, not 3072 "
            "(3 x 32 x 32)"
        )
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        raise DataLayoutError(f"{task}: {path} field {label_key!r} is not a list of int")
    if len(labels) != len(images):
        raise DataLayoutError(
            f"{task}: {path} field {label_key!r} holds {len(labels)} labels for "
            f"{len(images)} images"
        )
    if labels and not 0 <= min(labels) <= max(labels) < num_classes:
        raise DataLayoutError(
            f"{task}: {path} field {label_key!r} has labels outside 0..{num_classes - 1}"
        )
    return images.reshape(-1, 3, 32, 32), np.array(labels, dtype=np.int64)
