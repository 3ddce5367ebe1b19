"""llama.cpp as a benchmark peer (never a runtime dependency): built once from the source vendored in the
``llama-cpp-python`` sdist on the package index, run on the same GGUF files and prompts as saguaro.

Rows: ``llamacpp-ar-2t`` (plain decoding, ``llama-completion``) and ``llamacpp-sd-2t-d4`` /
``llamacpp-sd-2t-d8`` (its speculative decoding with the same draft, ``llama-speculative-simple``,
draft-max 4 and 8), greedy, ignoring EOS like every row of the comparison. Times are llama.cpp's own
(prompt evaluation = time to first token, plus decoding), so process start and model loading do not
count against it. Its output text is re-encoded with saguaro's tokenizer for the agreement column.

The build: CMake, Release, ``GGML_NATIVE=ON`` (the machine's own vector extensions, as a user building
llama.cpp would) except Intel AMX: on the AMX Xeons lent here ggml's AMX matmul crashes (SIGSEGV in
``ggml_backend_amx_mul_mat`` at the first forward), so it is compiled out with ``-mno-amx-*`` (GCC lets
an explicit ``-mno-`` win over ``-march=native``) and its AVX-512/VNNI kernels and weight repacking run,
as a user would end up running it. Cached under ``$SAGUARO_CACHE/llama.cpp/<version>-<flavor>`` (about
4-10 minutes on 2 cores, once). ``python -m saguaro.benchmark.llamacpp_peer --build`` builds it ahead of a run.

``SAGUARO_CPU_ISA=avx2`` (which lowers saguaro's kernels to their AVX2 path) gives the peer the same
ceiling: a build with ``GGML_NATIVE=OFF`` and AVX2/FMA/F16C only (flavor ``avx2``), so that an AVX-512
machine measures both engines' kernels as an AVX2-only one (a Zen 3) would run them. Torch's own
operators (saguaro's attention and norms) keep the machine's best path: torch 2.13 fails bf16 matmuls
under ``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 machine ("pack_vnni2 is only supported when avx512 is
supported").
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

#: the llama-cpp-python release whose vendored llama.cpp is built
VERSION = "0.3.36"
_TARGETS = ("llama-completion", "llama-speculative-simple")
#: a bound on one generation (seconds): a hung peer fails the row instead of the run
_TIMEOUT_S = 900
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
#: the build's flavors (part of its cache path) and their CMake options: the machine's own vector
#: extensions but AMX, or AVX2 at most (to match saguaro's kernels under SAGUARO_CPU_ISA=avx2)
_FLAVORS = {
    "native-noamx": ["-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_NO_AMX}"],
    "avx2": ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
             "-DGGML_BMI2=ON", "-DGGML_AVX512=OFF", "-DGGML_AVX_VNNI=OFF", "-DGGML_AMX_TILE=OFF",
             "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"],
}


def flavor() -> str:
    """The build to use: ``avx2`` while ``$SAGUARO_CPU_ISA`` holds saguaro's kernels to AVX2 (or lower:
    ggml has no scalar-only build worth comparing), else ``native-noamx``."""
    isa = os.environ.get("SAGUARO_CPU_ISA", "").strip().lower()
    return "avx2" if isa in ("avx2", "scalar") else "native-noamx"


def build_dir(version: str = VERSION) -> Path:
    """Where the peer's build lives (binaries in ``build/bin``)."""
    from saguaro.models.model_store import cache_root

    return cache_root() / "llama.cpp" / f"{version}-{flavor()}"


def binaries(version: str = VERSION, targets: Sequence[str] = _TARGETS) -> dict[str, Path]:
    """The built tools by name (FileNotFoundError naming the build command when missing)."""
    bin_dir = build_dir(version) / "build" / "bin"
    out = {name: bin_dir / name for name in targets}
    missing = [n for n, p in out.items() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"llama.cpp peer not built ({', '.join(missing)} missing in {bin_dir}); build it with "
                                f"`python -m saguaro.benchmark.llamacpp_peer --build` (about 10 minutes on 2 cores)")
    return out


def build(version: str = VERSION, *, jobs: Optional[int] = None, log: Any = sys.stderr,
          targets: Sequence[str] = _TARGETS) -> dict[str, Path]:
    """Download the sdist, build the peer's tools (once) and return them. ``targets``: which tools
    (the benchmark's rows need the default ones; the serving benchmark builds ``llama-server``)."""
    try:
        return binaries(version, targets)
    except FileNotFoundError:
        pass
    root = build_dir(version)
    src = root / "src"
    if not (src / "CMakeLists.txt").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            # Only the peer itself as source: ":all:" would also build its build tools (CMake) from source.
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--no-binary", "llama-cpp-python", f"llama-cpp-python=={version}", "-d", tmp], check=True)
            [sdist] = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                prefix = f"{sdist.name[:-len('.tar.gz')]}/vendor/llama.cpp/"
                members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
                for m in members:
                    m.name = m.name[len(prefix):]
                tar.extractall(src, members=[m for m in members if m.name], filter="data")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(src), "-B", str(root / "build"), *generator, "-DCMAKE_BUILD_TYPE=Release",
                    *_FLAVORS[flavor()], "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF",
                    # the server without its web UI (built with npm or downloaded: neither is wanted here)
                    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"],
                   check=True, stdout=log, stderr=log)
    subprocess.run(["cmake", "--build", str(root / "build"), "-j", str(jobs or os.cpu_count() or 2),
                    "--target", *targets], check=True, stdout=log, stderr=log)
    return binaries(version, targets)


# ------------------------------------------------------------------------------------ parsing
_PERF = re.compile(r"(prompt eval|\s+eval) time =\s*([\d.]+) ms /\s*(\d+) (?:tokens|runs)")
_SPEC = re.compile(r"(encoded|decoded)\s+(\d+) tokens in\s+([\d.]+) seconds")
_SPEC_COUNT = re.compile(r"n_(drafted|accept)\s*=\s*(\d+)")


def parse_completion_log(log: str) -> dict:
    """Prompt and decode times (seconds) and token counts from llama-completion's perf lines."""
    out: dict = {}
    for kind, ms, n in _PERF.findall(log):
        key = "prompt" if kind.strip() == "prompt eval" else "decode"
        out.setdefault(f"{key}_s", float(ms) / 1e3)  # the first block is the target context's
        out.setdefault(f"{key}_tokens", int(n))
    if "prompt_s" not in out or "decode_s" not in out:
        raise RuntimeError(f"llama-completion printed no perf lines; its log ends with:\n{log[-2000:]}")
    return out


def parse_speculative_log(log: str) -> dict:
    """Encode and decode times (seconds), tokens, drafted and accepted counts from llama-speculative-simple."""
    out: dict = {}
    for kind, n, s in _SPEC.findall(log):
        key = "prompt" if kind == "encoded" else "decode"
        out[f"{key}_s"], out[f"{key}_tokens"] = float(s), int(n)
    for kind, n in _SPEC_COUNT.findall(log):
        out[kind] = int(n)
    if "prompt_s" not in out or "decode_s" not in out:
        raise RuntimeError(f"llama-speculative-simple printed no timing lines; its log ends with:\n{log[-2000:]}")
    return out


# ------------------------------------------------------------------------------------ running
class LlamaCppRunner:
    """One llama.cpp row: plain decoding (draft None) or speculative decoding with draft-max ``draft_max``."""

    def __init__(self, target_gguf: Path, draft_gguf: Optional[Path], tokenizer: Any, *, threads: int,
                 draft_max: int = 4, context: int = 4096) -> None:
        self.bins = binaries()
        self.target, self.draft, self.tokenizer = Path(target_gguf), draft_gguf, tokenizer
        self.threads, self.draft_max, self.context = threads, draft_max, context

    def command(self, prompt_file: str, max_new_tokens: int, seed: int, temperature: float = 0.0) -> list[str]:
        """The peer's command line for one prompt (EOS ignored). Sampled rows sample the plain tempered
        distribution, as saguaro's rows do: llama.cpp's default top-k 40, top-p 0.95 and min-p 0.05
        truncations are turned off."""
        # --no-escape: the prompt's text as it is (escape processing would turn a backslash-n in code into
        # a newline)
        common = ["-m", str(self.target), "-f", prompt_file, "--no-escape", "-n", str(max_new_tokens),
                  "-t", str(self.threads),
                  "-c", str(self.context), "--temp", f"{float(temperature):g}", "--seed", str(seed), "--ignore-eos"]
        if temperature > 0:
            common += ["--top-k", "0", "--top-p", "1", "--min-p", "0"]
        if self.draft is None:
            return [str(self.bins["llama-completion"]), *common, "-no-cnv", "--no-display-prompt"]
        return [str(self.bins["llama-speculative-simple"]), *common, "-md", str(self.draft), "-td", str(self.threads),
                "--spec-type", "draft-simple", "--spec-draft-n-max", str(self.draft_max), "--spec-draft-n-min", "0"]

    def generate(self, batch_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> dict:
        """Generate for each request in turn (llama.cpp's tools take one prompt); the harness's result dict."""
        per_request, elapsed, ttft, figures = [], 0.0, None, []
        for ids in batch_ids:
            prompt = self.tokenizer.decode(ids)
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                f.write(prompt_file_text(prompt))
                path = f.name
            try:
                r = subprocess.run(self.command(path, max_new_tokens, seed, temperature), capture_output=True,
                                   text=True, timeout=_TIMEOUT_S)
            finally:
                os.unlink(path)
            if r.returncode != 0:
                raise RuntimeError(f"llama.cpp peer failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
            log = r.stderr + r.stdout
            fig = parse_completion_log(log) if self.draft is None else parse_speculative_log(log)
            text = r.stdout if self.draft is None else generated_text(r.stdout, prompt)
            per_request.append(self.tokenizer.encode(text, add_bos=False)[:max_new_tokens])
            elapsed += fig["prompt_s"] + fig["decode_s"]
            ttft = fig["prompt_s"] if ttft is None else ttft
            figures.append(fig)
        metrics: dict = {"peer": "llama.cpp", "version": VERSION, "threads": self.threads,
                         "decode_tokens": sum(f["decode_tokens"] for f in figures),
                         "decode_s": sum(f["decode_s"] for f in figures)}
        if self.draft is not None:
            metrics.update(draft_max=self.draft_max, drafted=sum(f.get("drafted", 0) for f in figures),
                           accepted=sum(f.get("accept", 0) for f in figures))
            if metrics["drafted"]:
                metrics["acceptance_rate"] = metrics["accepted"] / metrics["drafted"]
        return {"token_ids": [t for r in per_request for t in r], "batch_token_ids": per_request,
                "elapsed_s": elapsed, "ttft_s": ttft, "first_tokens": None, "metrics": metrics}


def prompt_file_text(prompt: str) -> str:
    """What to write to the peer's ``-f`` file for `prompt`: llama.cpp drops one trailing newline from a
    prompt file, so one more is written (a prompt ending in a newline, as the HumanEval ones do, would
    otherwise lose it and the peer would continue another text)."""
    return prompt + "\n"


def generated_text(stdout: str, prompt: str) -> str:
    """The generated text of llama-speculative-simple's stdout: it prints a blank line, the prompt's
    pieces, the generated pieces and a blank line."""
    text = stdout[2:] if stdout.startswith("\n\n") else stdout
    if text.startswith(prompt):
        text = text[len(prompt):]
    return text[:-2] if text.endswith("\n\n") else text


def gguf_path(spec: str) -> Path:
    """The GGUF file of a preset name or a .gguf path (the file saguaro's own rows load)."""
    from saguaro.models.presets import PRESETS, preset_gguf

    if spec in PRESETS:
        return preset_gguf(PRESETS[spec])
    p = Path(spec)
    if p.suffix == ".gguf" and p.is_file():
        return p
    raise ValueError(f"the llama.cpp peer needs a preset name or a .gguf file, got {spec!r}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m saguaro.benchmark.llamacpp_peer --build``: build the peer's tools ahead of a run."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m saguaro.benchmark.llamacpp_peer", description=__doc__.split("\n")[0])
    p.add_argument("--build", action="store_true", help="download the sdist and build the tools (cached)")
    args = p.parse_args(argv)
    if args.build:
        for name, path in build().items():
            print(f"{name}: {path}")
        return 0
    p.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
