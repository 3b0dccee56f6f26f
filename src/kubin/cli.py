"""The command line: launch options for the app, and headless commands for scripts and tests.

Only the standard library and Kubin's light modules are imported here, so `--help` answers at once;
torch, diffusers and Gradio are imported by the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from kubin import __version__
from kubin.app import EXIT_CANCELLED, EXIT_USER_ERROR, load_extensions, make_engine
from kubin.errors import KubinError
from kubin.params import TASK_PARAMS
from kubin.runtime.memory import CHOICES, MEMORY_FIELDS

CAPTION_MODES = (
    "short",
    "detailed",
    "more detailed",
    "tags",
)  # kubin.tools.caption.MODES, without its imports

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_USER_ERROR",
    "build_parser",
    "load_extensions",
    "load_settings",
    "main",
    "make_engine",
]


def _common(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """Options every command takes. Subcommands use SUPPRESS so they don't overwrite the top level's."""
    d = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config", metavar="FILE", default=d, help="user config file (default configs/kubin.user.yaml)"
    )
    parser.add_argument(
        "--model", metavar="ID", default=d, help="model id (see `kubin models`) or a local model folder"
    )
    parser.add_argument(
        "--output-dir", metavar="DIR", default=d, help="where outputs are saved (default output/)"
    )
    parser.add_argument(
        "--wildcards-dir", metavar="DIR", default=d,
        help="where __name__ in a prompt finds name.txt (default wildcards/ in the Kubin folder)",
    )  # fmt: skip
    parser.add_argument(
        "--lora-dir", metavar="DIR", default=d,
        help="the LoRA adapters (.safetensors, subfolders allowed; default models/lora in the Kubin folder)",
    )  # fmt: skip
    parser.add_argument(
        "--fuse-lora", action="store_true", default=d,  # not --lora-*: generate's --lora would be ambiguous
        help="merge a job's LoRA adapters into the weights: faster while the same adapters and weights run "
        "job after job; a change merges again (lora.fuse)",
    )  # fmt: skip
    parser.add_argument(
        "--training-dir", metavar="DIR", default=d,
        help="where LoRA training runs keep checkpoints, caches and samples (default training/ in the Kubin folder)",
    )  # fmt: skip
    parser.add_argument("--device", default=d, help="auto (default), cpu, mps, cuda or cuda:N")
    for tool, what in TOOL_FLAGS.items():
        parser.add_argument(f"--{tool}-model", metavar="ID", default=d,
                            help=f"{what}: a Hugging Face id, a local folder or tiny-{tool} (config tools.{tool}_model)")  # fmt: skip
    parser.add_argument(
        "--dtype", default=d, choices=["auto", "fp32", "fp16", "bf16"], help="weights precision"
    )
    _memory_flags(parser, d)
    parser.add_argument(
        "--cluster", metavar="ADDRESS", default=d,
        help="run jobs on a Ray Serve cluster: local (start Ray here), auto (the cluster this machine is a node "
        "of) or HOST:PORT of its head",
    )  # fmt: skip
    parser.add_argument(
        "--cluster-replicas", metavar="N", type=int, default=d,
        help="worker replicas on the cluster (default: one per GPU, at least one)",
    )  # fmt: skip
    presets = parser.add_mutually_exclusive_group()
    presets.add_argument(
        "--medvram", dest="memory_preset", action="store_const", const="medvram", default=d,
        help="model offload plus the VAE/attention options that suit the model (see the README)",
    )  # fmt: skip
    presets.add_argument(
        "--lowvram", dest="memory_preset", action="store_const", const="lowvram", default=d,
        help="sequential offload plus the VAE/attention options that suit the model: least VRAM, slow",
    )  # fmt: skip
    presets.add_argument(
        "--memory-preset", dest="memory_preset", choices=CHOICES["preset"], default=d,
        help=MEMORY_FIELDS["preset"].metadata["help"],
    )  # fmt: skip
    parser.add_argument("--verbose", "-v", action="store_true", default=d or False, help="debug logging")


TOOL_FLAGS = {
    "depth": "the depth model that turns a ControlNet hint photo into a depth map",
    "caption": "the caption model (Describe, `kubin caption`, /sdapi/v1/interrogate)",
    "enhance": "the prompt expansion model (Enhance prompt, `kubin enhance`)",
}
# Choice flags that may stand alone: `--estimate-depth` means --estimate-depth always.
BARE_FLAG_VALUES = {"estimate_depth": "always"}


def _memory_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """One flag per memory/speed option, from its declaration in MemoryOptions (the preset has its own)."""
    for name, spec in MEMORY_FIELDS.items():
        if name == "preset":
            continue
        flag, what = "--" + name.replace("_", "-"), spec.metadata["help"]
        if isinstance(spec.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=what)
        elif name in CHOICES:
            parser.add_argument(flag, choices=CHOICES[name], default=default, help=what)
        else:
            parser.add_argument(flag, type=type(spec.default), default=default, metavar="X", help=what)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubin",
        description="Kubin: a local web UI for Kandinsky models. Without a command it starts the web UI.",
        epilog="Examples: `python -m kubin --model tiny-kd22` starts the UI; "
        "`python -m kubin generate --model tiny-kd22 --prompt 'a red cat'` makes an image headless.",
    )
    parser.add_argument("--version", action="version", version=f"kubin {__version__}")
    _common(parser)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 7860)")
    parser.add_argument(
        "--share", action="store_true", default=None, help="create a public Gradio share link"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="accepted for compatibility; Kubin never opens one"
    )
    parser.add_argument(
        "--listen", action="store_true", default=None,
        help="listen on all network interfaces (0.0.0.0); warns unless --auth is set",
    )  # fmt: skip
    parser.add_argument(
        "--auth", metavar="USER:PASS", help="require this login for the UI and the API (comma-separate several)",
    )  # fmt: skip
    parser.add_argument(
        "--auth-file", metavar="FILE", help="file of user:password lines for the UI and the API"
    )
    parser.add_argument(
        "--api", action=argparse.BooleanOptionalAction, default=None,
        help="serve the REST API (/sdapi/v1, /kubin/api/v1, docs at /docs); on by default",
    )  # fmt: skip
    parser.add_argument("--extensions-path", metavar="DIR", help="folder of extensions (default extensions/)")
    parser.add_argument(
        "--colab", action=argparse.BooleanOptionalAction, default=None,
        help="Google Colab defaults (found by itself on Colab): share link, outputs and caches on Drive "
        "when mounted, the low-VRAM preset",
    )  # fmt: skip
    parser.add_argument(
        "--install-extension-deps", action="store_true", default=None,
        help="pip-install the requirements of enabled extensions that need them, then load them",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = sub.add_parser("generate", help="generate outputs headless; prints one JSON line per output")
    _common(gen, suppress=True)
    gen.add_argument(
        "--task", choices=sorted(TASK_PARAMS),
        help="task to run (default t2i, or the model's own task if it cannot do t2i)",
    )  # fmt: skip
    gen.add_argument(
        "--prompts-file", metavar="FILE",
        help="one job per line: a text file of prompts (blank and # lines skipped), or a CSV file whose "
        "first row names parameters (prompt,seed,steps,...); the other flags apply to every line",
    )  # fmt: skip
    gen.add_argument(
        "--input-dir", metavar="DIR",
        help="batch over a folder: one job per image of DIR as the task's input image (i2i, inpaint, outpaint, "
        "i2v, i2mesh); outputs keep the images' names in a new folder; unreadable files are skipped and reported",
    )  # fmt: skip
    gen.add_argument(
        "--mask-dir", metavar="DIR",
        help="with --input-dir and --task inpaint: the mask of each image, the file with the same name here",
    )  # fmt: skip
    gen.add_argument(
        "--server", metavar="URL",
        help="queue the job(s) on a running Kubin (e.g. http://127.0.0.1:7860) instead of loading the model "
        "here: they join its queue and history; outputs stay in its output folder (see --download)",
    )  # fmt: skip
    gen.add_argument(
        "--server-auth", metavar="USER:PASSWORD",
        help="credentials of a server started with --auth (or set KUBIN_SERVER_AUTH)",
    )  # fmt: skip
    gen.add_argument(
        "--download", metavar="DIR",
        help="with --server: copy each output into DIR; the JSON line's path is then the copy",
    )  # fmt: skip
    gen.add_argument(
        "--xyz", action="append", metavar="NAME=VALUES",
        help='an X/Y/Z grid axis, up to three: "steps=20,30", "seed=1-4", "size=512x512,768x512", '
        '"prompt S/R=cat,dog"; one job per combination, then a labelled grid image (printed last)',
    )  # fmt: skip
    gen.add_argument(
        "--enhance-prompt", action="store_true",
        help="expand each job's prompt with the prompt expansion model (--enhance-model) first; the outputs' "
        "metadata records it (prompt_enhancement)",
    )  # fmt: skip
    seen = set()
    for cls in TASK_PARAMS.values():
        for fs in cls.field_specs().values():
            if fs.name not in seen:
                seen.add(fs.name)
                _add_param_flag(gen, fs, cls.task)

    exts = sub.add_parser("extensions", help="list the extensions found, one line each with its status")
    _common(exts, suppress=True)
    exts.add_argument(
        "--extensions-path", metavar="DIR", default=argparse.SUPPRESS, help="folder of extensions"
    )
    exts.add_argument(
        "--install-extension-deps", action="store_true", default=argparse.SUPPRESS,
        help="pip-install missing requirements of the enabled extensions first",
    )  # fmt: skip

    tool = sub.add_parser(
        "tool", help="run an extension's command: `kubin tool` lists them, `kubin tool NAME --help` tells one"
    )
    _common(tool, suppress=True)
    tool.add_argument(
        "--extensions-path", metavar="DIR", default=argparse.SUPPRESS, help="folder of extensions"
    )
    tool.add_argument("tool_name", metavar="NAME", nargs="?", help="the command (e.g. upscale, rembg)")
    tool.add_argument("tool_args", metavar="ARGS", nargs=argparse.REMAINDER, help="the command's own flags")

    models = sub.add_parser("models", help="list the models Kubin knows")
    models.add_argument("--json", action="store_true", help="one JSON object per line")

    caption = sub.add_parser(
        "caption", help="describe images with the caption model; prints one JSON line per image, and for a "
        "folder writes name.txt beside each image (LoRA training captions)",
    )  # fmt: skip
    _common(caption, suppress=True)
    caption.add_argument("target", metavar="FILE_OR_DIR")
    caption.add_argument("--mode", choices=CAPTION_MODES, default="short",
                         help="a short or (more) detailed caption, or comma-separated tags")  # fmt: skip
    caption.add_argument(
        "--detail", dest="mode", choices=CAPTION_MODES, help=argparse.SUPPRESS
    )  # the old name
    caption.add_argument(
        "--overwrite", action="store_true", help="replace existing .txt files (default: skip them)"
    )

    enhance = sub.add_parser(
        "enhance", help="expand a short prompt into a detailed one for --model; prints it"
    )
    _common(enhance, suppress=True)
    enhance.add_argument("prompt", metavar="PROMPT")

    download = sub.add_parser(
        "download",
        help="fetch a model's weights (or a tool model's, e.g. the depth model) into the Hugging Face cache",
    )
    download.add_argument("model_id", metavar="ID")

    _train_parser(sub)

    cluster = sub.add_parser("cluster", help="the Ray Serve cluster: `kubin cluster status`")
    _common(cluster, suppress=True)
    cluster.add_argument("action", choices=["status"], help="status: its replicas, devices and loaded models")
    cluster.add_argument(
        "--server", metavar="URL", help="ask a running Kubin (http://host:port) instead of the cluster itself"
    )
    cluster.add_argument("--json", action="store_true", help="the status as one JSON object")

    save = sub.add_parser(
        "save", help="write a model in diffusers layout to a folder (usable as --model FOLDER)"
    )
    _common(save, suppress=True)
    save.add_argument("model_id", metavar="ID")
    save.add_argument("folder", metavar="FOLDER")
    return parser


def _train_parser(sub) -> None:
    """`train`: one flag per training option, from its declaration in TrainingOptions."""
    from kubin.training.options import option_fields

    train = sub.add_parser(
        "train", help="train a LoRA adapter on a folder of pictures (or short clips); prints progress and a final JSON line",
        description="Train a LoRA adapter for --model on the pictures in --data (for a text-to-video model, short "
        ".mp4/.webm/.gif clips, sampled to --frames at --fps), each with an optional same-named .txt caption; the adapter is written as NAME.safetensors to the LoRA folder, usable "
        "with `generate --lora NAME` or the path the last line gives.",
    )  # fmt: skip
    _common(train, suppress=True)
    for f in option_fields():
        if f.name == "model":
            continue  # a common option
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        rng = f" [{_n(meta['min'])}..{_n(meta['max'])}]" if meta["min"] is not None else ""
        kwargs: dict[str, Any] = {"dest": f"train_{f.name}", "help": meta["help"] + rng, "default": None}
        if f.type in (bool, "bool"):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.type in (list, "list[str]"):
            kwargs.update(action="append", metavar="TEXT")
        elif meta["choices"]:
            kwargs["choices"] = meta["choices"]
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            kwargs.update(type=kind, metavar=kind.__name__.upper())
        train.add_argument(flag, **kwargs)
    train.add_argument(
        "--resume", action="store_true", help="go on from the last checkpoint of --output NAME"
    )
    train.add_argument(
        "--check",
        action="store_true",
        help="only check the dataset: print what is usable, skipped, and the buckets",
    )


# Shorter flags users know a parameter by, besides --<name> (each with its --no- form for a switch).
FLAG_ALIASES = {"sample_audio": "--sound"}


def _add_param_flag(parser: argparse.ArgumentParser, fs, task: str) -> None:
    """One `generate` flag per parameter, with its range and help from the spec."""
    rng = f" [{_n(fs.minimum)}..{_n(fs.maximum)}]" if fs.minimum is not None else ""
    extra = f"; {fs.help}" if fs.help else ""
    kwargs: dict[str, Any] = {"dest": f"param_{fs.name}", "help": f"{fs.label}{rng}{extra}"}
    if fs.kind == "lora":  # --lora NAME[:WEIGHT], once per adapter
        kwargs.update(action="append", metavar="NAME[:WEIGHT]")
        parser.add_argument("--lora", **kwargs)
        return
    if fs.type is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif fs.type is list:
        # Several values, or one comma-separated value: --weights 0.3 0.7 or --expand 64,0,64,0
        item = "FILE" if fs.kind in ("image", "video") else fs.item_type.__name__.upper()
        kwargs.update(nargs="+", metavar=item)
    elif fs.choices:
        kwargs["choices"] = fs.choices
        if fs.name in BARE_FLAG_VALUES:
            kwargs.update(nargs="?", const=BARE_FLAG_VALUES[fs.name])
            kwargs["help"] += f" (alone: {BARE_FLAG_VALUES[fs.name]})"
    else:
        kwargs.update(
            type=fs.type, metavar="FILE" if fs.kind in ("image", "video") else fs.type.__name__.upper()
        )
    flags = ["--" + fs.name.replace("_", "-")] + ([FLAG_ALIASES[fs.name]] if fs.name in FLAG_ALIASES else [])
    parser.add_argument(*flags, **kwargs)


def _n(x: float | None) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "models":
            return cmd_models(args)
        if args.command == "extensions":
            return cmd_extensions(args)
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "caption":
            return cmd_caption(args)
        if args.command == "enhance":
            return cmd_enhance(args)
        if args.command == "download":
            return cmd_download(args)
        if args.command == "tool":
            return cmd_tool(args)
        if args.command == "save":
            return cmd_save(args)
        if args.command == "cluster":
            return cmd_cluster(args)
        return cmd_launch(args)
    except KubinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def load_settings(args: argparse.Namespace):
    from kubin.config import load_config

    overrides = {
        "model": getattr(args, "model", None),
        "output_dir": getattr(args, "output_dir", None),
        "wildcards.path": getattr(args, "wildcards_dir", None),
        "lora.path": getattr(args, "lora_dir", None),
        "lora.fuse": getattr(args, "fuse_lora", None),
        "training.path": getattr(args, "training_dir", None),
        "device": getattr(args, "device", None),
        **{f"tools.{tool}_model": getattr(args, f"{tool}_model", None) for tool in TOOL_FLAGS},
        "dtype": getattr(args, "dtype", None),
        "server.host": getattr(args, "host", None),
        "server.port": getattr(args, "port", None),
        "server.share": getattr(args, "share", None),
        "server.listen": getattr(args, "listen", None),
        "server.auth": getattr(args, "auth", None),
        "server.auth_file": getattr(args, "auth_file", None),
        "server.api": getattr(args, "api", None),
        "extensions.path": getattr(args, "extensions_path", None),
        "extensions.install_deps": getattr(args, "install_extension_deps", None),
        "cluster.address": getattr(args, "cluster", None),
        "cluster.replicas": getattr(args, "cluster_replicas", None),
        **{
            f"memory.{name}": getattr(args, "memory_preset" if name == "preset" else name, None)
            for name in MEMORY_FIELDS
        },
    }
    defaults: dict[str, Any] = {}
    colab = getattr(args, "colab", None)
    if colab is None:
        from kubin.runtime.colab import on_colab

        colab = on_colab()
    if colab:
        import os

        from kubin.runtime.colab import colab_defaults

        found = colab_defaults()
        defaults = found.config
        for name, value in found.environ.items():
            os.environ.setdefault(name, value)
        for note in found.notes:
            logging.getLogger("kubin").info("Colab: %s", note)
    loaded = load_config(getattr(args, "config", None), overrides, defaults=defaults)
    for warning in loaded.warnings:
        logging.getLogger("kubin").warning(warning)
    return loaded


def cmd_extensions(args: argparse.Namespace) -> int:
    for ext in load_extensions(load_settings(args), bool(getattr(args, "install_extension_deps", False))):
        print(ext.status_line())
    return 0  # a failed extension is reported, not an error of this command


def cmd_tool(args: argparse.Namespace) -> int:
    """`kubin tool NAME ARGS`: the command an enabled extension added (api.add_command), run with this
    command line's own engine; without NAME, the list of commands."""
    settings = load_settings(args)
    extensions = load_extensions(settings)
    commands = {
        c.name: (ext, c) for ext in extensions if ext.status == "ok" and ext.api for c in ext.api.commands
    }
    if not args.tool_name:
        for name, (ext, command) in sorted(commands.items()):
            print(f"{name:<16} {command.help} ({ext.name})")
        return 0
    if args.tool_name not in commands:
        known = ", ".join(sorted(commands)) or "none (are the extensions enabled? see `kubin extensions`)"
        raise KubinError(f"No extension command {args.tool_name!r}; the commands are: {known}.")
    ext, command = commands[args.tool_name]
    parser = argparse.ArgumentParser(prog=f"kubin tool {command.name}", description=command.help)
    if command.configure is not None:
        command.configure(parser)
    own = parser.parse_args(args.tool_args)
    engine = make_engine(settings)
    engine.extensions = extensions  # their job hooks run around this command's jobs too
    try:
        return int(command.run(engine, own) or 0)
    finally:
        engine.close(wait=True)


def cmd_models(args: argparse.Namespace) -> int:
    from kubin.models.registry import list_models

    for spec in list_models():
        row: dict[str, Any] = {
            "id": spec.id,
            "family": spec.family,
            "implementation": spec.implementation,
            "tasks": list(spec.tasks),
            "title": spec.title,
        }
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{spec.id:<28} {spec.family:<6} {spec.implementation:<10} {','.join(spec.tasks):<16} {spec.title}"
            )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """One job from the flags, or with --prompts-file one job per line of the file (the flags apply to
    every line, the line's own values over them). Every job is queued before the first runs."""
    from kubin.engine import CANCELLED, FAILED

    params = {
        k.removeprefix("param_"): v for k, v in vars(args).items() if k.startswith("param_") and v is not None
    }
    if args.server:
        return _generate_on_server(args, params)
    if args.download or args.server_auth:
        raise KubinError("--download and --server-auth go with --server URL (a running Kubin).")
    settings = load_settings(args)
    engine = make_engine(settings)
    task = args.task
    if task is None:
        spec = engine.manager.spec(settings.get("model"))
        task = "t2i" if spec.supports("t2i") else spec.tasks[0]
    if args.xyz:
        return _generate_grid(args, engine, task, settings.get("model"), params)
    if args.mask_dir and not args.input_dir:
        engine.close(wait=True)
        raise KubinError("--mask-dir goes with --input-dir (the folder of images to inpaint).")
    if args.input_dir:
        handles = _queue_folder(args, engine, task, settings.get("model"), params)
    else:
        handles = _queue_lines(args, engine, task, settings.get("model"), params)
    code = 0
    for extra, handle in handles:
        printed = 0
        try:  # each notice and each output as soon as the job tells it, so a script sees progress
            for event in handle.events():
                # Notices: an adjusted input (resized mask, ...), the model's load, torch.compile's warm-up.
                if event.kind == "notice":
                    print(f"notice: {event.text}", file=sys.stderr, flush=True)
                elif event.kind == "result":
                    print(json.dumps(event.result.as_json() | extra), flush=True)
                    printed += 1
        except KeyboardInterrupt:
            for _, other in handles:
                engine.cancel(other)
            handle.wait()
            _print_results(handle, printed, extra)  # what was saved before the job stopped
        where = (
            f"line {extra['line']}: "
            if "line" in extra
            else f"{Path(extra['source']).name}: "
            if extra
            else ""
        )
        if handle.state == FAILED:
            print(f"error: {where}{handle.error}", file=sys.stderr)
            code = code or EXIT_USER_ERROR
        elif handle.state == CANCELLED:
            print(f"cancelled: {where}{handle.error}", file=sys.stderr)
            code = EXIT_CANCELLED
    # Let the worker thread end before Python does: torch aborts ("terminate called without an active
    # exception") when a thread is still in native code at interpreter exit.
    engine.close(wait=True)
    return code


def _generate_on_server(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """--server: the job (or the prompts file's, or the folder's) queued on a running Kubin and followed
    there; nothing is loaded here."""
    import os

    from kubin.remote import RemoteServer, encode_images, follow

    if args.xyz:
        raise KubinError("--xyz does not run with --server yet: run the grid in the server's tab or its API.")
    task = args.task or "t2i"
    model = getattr(args, "model", None)
    server = RemoteServer(args.server, args.server_auth or os.environ.get("KUBIN_SERVER_AUTH"))
    try:
        if args.input_dir:
            masks = Path(args.mask_dir).expanduser().resolve() if args.mask_dir else None
            answer = server.submit_folder(
                task, Path(args.input_dir).expanduser().resolve(), masks, dict(params, model=model)
            )
            for skipped in answer["skipped"]:
                print(f"skipped: {skipped['file']}: {skipped['why']}", file=sys.stderr, flush=True)
            jobs = answer["jobs"]
            extras = [{"source": source} for source in answer["sources"]]
        elif args.prompts_file:
            path = Path(args.prompts_file)
            try:
                text = path.read_text(encoding="utf-8-sig")
            except OSError as exc:
                raise KubinError(f"Could not read {path} ({exc.strerror or exc}).") from None
            answer = server.submit_file(
                task, text, path.suffix.lower() == ".csv", dict(encode_images(task, params), model=model)
            )
            jobs, extras = answer["jobs"], [{"line": line} for line in answer["lines"]]
        else:
            body = encode_images(task, params) | ({"model": model} if model else {})
            jobs, extras = [server.submit(task, body)], [{}]
        download = Path(args.download).expanduser() if args.download else None
        return follow(server, [job["id"] for job in jobs], extras, download)
    finally:
        server.close()


def _queue_lines(args: argparse.Namespace, engine, task: str, model_id: str, params: dict[str, Any]):
    """The flags' job, or one per line of --prompts-file: [(what to add to each JSON line, handle)]."""
    from kubin.engine import Job

    lines: list[tuple[int | None, dict[str, Any]]] = [(None, params)]
    if args.prompts_file:
        from kubin.prompts import read_prompts_file

        lines = [(p.line, {**params, **p.params}) for p in read_prompts_file(args.prompts_file, task, params)]
    handles = []
    try:
        for line, values in lines:
            meta = _enhanced(engine, model_id, values) if args.enhance_prompt else {}
            handles.append(
                ({"line": line} if line else {}, engine.submit(Job(task, model_id, values, meta=meta)))
            )
    except KubinError as exc:
        for _, queued in handles:
            engine.cancel(queued)
        engine.close(wait=True)
        raise KubinError(f"{args.prompts_file}, line {line}: {exc}" if line else str(exc)) from None
    return handles


def _queue_folder(args: argparse.Namespace, engine, task: str, model_id: str, params: dict[str, Any]):
    """--input-dir: one job per image, each JSON line with its `source`; skipped files on stderr."""
    from kubin.batch import queue_folder

    try:
        plan, queued = queue_folder(engine, task, model_id, params, args.input_dir, args.mask_dir)
    except KubinError:
        engine.close(wait=True)
        raise
    for name, why in plan.skipped:
        print(f"skipped: {name}: {why}", file=sys.stderr, flush=True)
    print(f"notice: {len(queued)} image(s) of {plan.folder} → {plan.output}", file=sys.stderr, flush=True)
    return [({"source": str(item.source)}, handle) for item, handle in queued]


def _enhanced(engine, model_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """--enhance-prompt: the job's prompt expanded in place; returns what its outputs' metadata records."""
    from kubin.tools.jobs import enhance_model_for, enhance_prompt, enhancement_meta

    original = str(values.get("prompt") or "")
    if not original.strip():
        return {}
    values["prompt"] = enhance_prompt(engine, original, model_id)
    expander = enhance_model_for(engine, model_id)
    print(f"notice: prompt expanded by {expander}: {values['prompt']}", file=sys.stderr, flush=True)
    return enhancement_meta(original, values["prompt"], expander, values["prompt"])


def _generate_grid(args: argparse.Namespace, engine, task: str, model_id: str, params: dict[str, Any]) -> int:
    """--xyz: every combination queued, each cell's output printed as it is saved (with its place in the
    grid), then the grid image as a last line {"grid": path, ...}. Ctrl+C stops the cells left and saves
    a grid of those made."""
    from kubin.engine import FAILED
    from kubin.grid import engine_plan, save_grid, start_grid

    axes = []
    for item in args.xyz:
        name, sep, values = item.partition("=")
        if not sep:
            engine.close(wait=True)
            raise KubinError(f"--xyz takes NAME=VALUES, e.g. steps=20,30 (got {item!r}).")
        axes.append((name.strip(), values))
    try:
        plan = engine_plan(engine, task, model_id, params, axes)
        run = start_grid(engine, plan)
    except KubinError:
        engine.close(wait=True)
        raise
    code = 0
    try:
        for handle, cell in zip(run.handles, plan.cells(), strict=True):
            handle.wait()
            _print_results(handle, 0, {"cell": [cell.x, cell.y, cell.z]})
            if handle.state == FAILED:
                print(f"error: cell {cell.x},{cell.y},{cell.z}: {handle.error}", file=sys.stderr)
                code = EXIT_USER_ERROR
    except KeyboardInterrupt:
        run.cancel(engine)
        code = EXIT_CANCELLED
    path = save_grid(run, engine.output_dir)
    made = sum(1 for p in run.cell_paths() if p)
    print(
        json.dumps({"grid": str(path) if path else None, "cells": made, "of": len(run.handles)}), flush=True
    )
    engine.close(wait=True)
    return code


def _print_results(handle, printed: int, extra: dict[str, Any] | None = None) -> int:
    for result in handle.results[printed:]:
        print(json.dumps(result.as_json() | (extra or {})), flush=True)
    return len(handle.results)


def cmd_train(args: argparse.Namespace) -> int:
    """Queue one training run and follow it: a line per step (and per notice, sample and checkpoint), then
    the result as one JSON line. Ctrl-C stops it at the next step with a checkpoint (--resume goes on)."""
    from kubin.engine import CANCELLED, FAILED
    from kubin.training.options import TrainingOptions

    settings = load_settings(args)
    values = {
        k.removeprefix("train_"): v for k, v in vars(args).items() if k.startswith("train_") and v is not None
    }
    values = {**values, "model": settings.get("model")}
    engine = make_engine(settings)
    if args.check:
        from kubin.training.loop import Trainer

        options = TrainingOptions.from_dict(values)
        spec = engine.manager.spec(options.model)
        device = engine.manager.placement().device  # where it would run: 8-bit Adam needs CUDA
        trainer = Trainer(options, spec, {}, engine.trainings.run_dir(options), engine.loras.folder, device)
        print(json.dumps(trainer.check_dataset().as_json()))
        return 0
    run = engine.trainings.start(values, resume=args.resume)
    for line in run.dataset.skipped:
        print(f"skipped: {line[0]} ({line[1]})", file=sys.stderr, flush=True)
    try:
        for event in run.follow():
            if event.kind == "step":
                eta = f" eta {event.eta:.0f}s" if event.eta is not None else ""
                print(
                    f"step {event.step}/{event.total} loss {event.loss:.5f} lr {event.lr:.3g}{eta}",
                    flush=True,
                )
            elif event.kind == "notice":
                print(f"notice: {event.text}", file=sys.stderr, flush=True)
            elif event.kind == "sample":
                print(f"samples at step {event.step}: {', '.join(event.paths)}", file=sys.stderr, flush=True)
            elif event.kind == "checkpoint":
                print(f"checkpoint: {event.text}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        run.cancel()
        run.wait()
    engine.close(wait=True)
    if run.state == FAILED:
        print(f"error: {run.error}", file=sys.stderr)
        return EXIT_USER_ERROR
    if run.state == CANCELLED:
        print(f"cancelled: {run.error}", file=sys.stderr)
        return EXIT_CANCELLED
    print(json.dumps(run.result.as_json() if run.result else run.as_json()), flush=True)
    return 0


def cmd_caption(args: argparse.Namespace) -> int:
    """One JSON line per image ({"file", "caption", "mode", "caption_model"} or {"file", "error"}); a folder's captions also go to
    name.txt beside each image, existing ones kept unless --overwrite. Unreadable files are reported and the
    rest go on; the exit code says whether any failed."""
    from pathlib import Path

    from kubin.tools.caption import image_files
    from kubin.tools.jobs import submit_captions

    target = Path(args.target).expanduser()
    if not target.exists():
        raise KubinError(f"{args.target} does not exist.")
    engine = make_engine(load_settings(args))
    files = image_files(target)
    if not files:
        engine.close(wait=True)
        raise KubinError(f"{args.target} holds no image files.")
    failed = 0

    recorded = {"mode": args.mode, "caption_model": engine.tool_models.caption}

    def report(entry, done: int, total: int) -> None:
        nonlocal failed
        line = entry.as_json() | (recorded if entry.caption is not None else {})
        print(json.dumps(line, ensure_ascii=False), flush=True)
        if entry.error:
            failed += 1
            print(f"error: {entry.error}", file=sys.stderr, flush=True)

    handle = submit_captions(engine, files, target.is_dir(), args.overwrite, mode=args.mode, on_entry=report)
    try:
        handle.wait()
    except KeyboardInterrupt:
        handle.cancel()
        handle.wait()
    engine.close(wait=True)
    if handle.error is not None:
        print(f"{'cancelled' if handle.state == 'cancelled' else 'error'}: {handle.error}", file=sys.stderr)
        return EXIT_CANCELLED if handle.state == "cancelled" else EXIT_USER_ERROR
    return EXIT_USER_ERROR if failed else 0


def cmd_enhance(args: argparse.Namespace) -> int:
    """The prompt expanded for --model (the generation model it is for): by the prompt expansion model, or by
    that model's own encoder (Kandinsky 5 and 6)."""
    from kubin.tools.jobs import enhance_prompt

    settings = load_settings(args)
    engine = make_engine(settings)
    try:
        print(enhance_prompt(engine, args.prompt, settings.get("model")), flush=True)
    finally:
        engine.close(wait=True)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from kubin.errors import UnknownModel
    from kubin.models.registry import resolve_model
    from kubin.models.weights import ensure_weights
    from kubin.tools.models import is_tool_model
    from kubin.tools.weights import download, is_tiny

    settings = load_settings(args)
    if is_tiny(args.model_id):
        print(f"{args.model_id} is built in code and needs no download.")
        return 0
    if is_tool_model(args.model_id):
        print(f"{args.model_id}: {download(args.model_id)}")
        return 0
    try:
        spec = resolve_model(args.model_id, settings.get("models") or {})
    except UnknownModel:
        if args.model_id.count("/") != 1:  # not a Hugging Face id: the registry's message says what is known
            raise
        print(f"{args.model_id}: {download(args.model_id)}")  # a tool model that the settings name
        return 0
    if spec.tiny:
        print(f"{spec.id} is built in code and needs no download.")
        return 0
    import importlib

    # Native families fetch their own files (single checkpoints, official layouts); the rest are diffusers repos.
    own = getattr(importlib.import_module(spec.module), "download", None)
    found = own(spec) if own is not None else {c: ensure_weights(s, spec.id) for c, s in spec.sources.items()}
    for component, path in found.items():
        print(f"{spec.id} {component}: {path}")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    engine = make_engine(settings)
    folder = engine.manager.save(args.model_id, args.folder)
    print(json.dumps({"model": args.model_id, "folder": str(folder)}))
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    """`kubin cluster status`: asks a running Kubin (--server) or the configured cluster (without
    deploying anything) for its replicas, and prints them."""
    from kubin.cluster.status import fetch_status, format_status

    status = fetch_status(load_settings(args), args.server)
    print(json.dumps(status) if args.json else format_status(status))
    return 0 if status.get("available") else EXIT_USER_ERROR


def cmd_launch(args: argparse.Namespace) -> int:
    from kubin.ui.app import launch

    return launch(load_settings(args))
