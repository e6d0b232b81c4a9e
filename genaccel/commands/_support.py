"""Shared pieces of the subcommands (not a command itself): device choice and turning input errors into one-liners."""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from typing import Iterator

import torch

from genaccel.errors import UserFacingError


def default_device() -> str:
    """This process's device under `accelerate launch` (cuda:RANK on GPUs), else cuda if available, else cpu."""
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes > 1:
        return str(state.device)
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise input errors (bad paths, undecodable files, missing weights) as UserFacingError."""
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise UserFacingError(str(error).replace("\n", " ")) from None
