"""Fixtures for kernel tests that need the tiny random model builders of tests/models."""
from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def model_helpers() -> ModuleType:
    """tests/models/conftest.py as a module (make_hf, native_from_hf): loaded by path, because two
    conftest modules cannot be imported by the same name."""
    path = pathlib.Path(__file__).resolve().parents[1] / "models" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_models_helpers_for_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
