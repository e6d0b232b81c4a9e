"""Shared pieces of the subcommands (not a command itself): device choice, turning input errors into
one-liners, and options generated from a config dataclass."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, help: dict[str, str],
                         choices: dict[str, tuple]) -> None:
    """One `--field-name` option per field of a config dataclass (except output_dir), with its default;
    bools become --x / --no-x."""
    for field in dataclasses.fields(config_class):
        if field.name == "output_dir":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                                help=help.get(field.name))
        else:
            kind = {"int": int, "float": float, "str": str}[str(field.type)]
            parser.add_argument(flag, type=kind, default=field.default, choices=choices.get(field.name),
                                help=help.get(field.name, f"default: {field.default}"))
