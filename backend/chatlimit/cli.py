"""The `chatlimit` command: serve, and with the tools extra cluster, compare and bench."""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
from collections.abc import Sequence

from . import __version__
from .settings import SettingsError, load_settings
from .tools import TOOLS
from .tools.processes import port_holder  # standard library only: no tools extra needed

# `chatlimit serve`'s exit code when its port is already taken (settings errors are 2).
PORT_TAKEN = 3


def tune_garbage_collector() -> None:
    """Keep the collector's pauses out of the request path of a serving process.

    Everything built so far (modules, the app, its routes) lives until exit: frozen, full
    collections stop re-scanning it, and a higher first threshold makes collections rarer.
    Measured with wrk on 2 cores (docs/benchmarks.md): Redis-limited /chat p99 went from
    46 ms to 9 ms, because full passes over ~10^5 startup objects had been pausing requests.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from .app import create_app
    from .observe.logs import configure_logging
    from .web.protocol import limited_http_protocol

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(**overrides)
    holder = port_holder(settings.port, settings.host)
    if holder is not None:
        # Before any log line: "serving" and then uvicorn's traceback would bury this.
        print(f"chatlimit serve: port {settings.port} on {settings.host} is taken by {holder}; "
              "choose another with --port N or PORT", file=sys.stderr)
        return PORT_TAKEN
    configure_logging(settings.log_level, settings.log_format, settings.instance_name)
    app = create_app(settings)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # chatlimit reads X-Forwarded-For itself, trusting only TRUSTED_PROXIES.
        proxy_headers=False,
        server_header=False,
        access_log=settings.access_log,
        log_level=settings.log_level,
        # JSON: uvicorn's loggers propagate to the one JSON handler instead of their own text.
        log_config=None if settings.log_format == "json" else LOGGING_CONFIG,
        timeout_graceful_shutdown=10,
        # Caps the request head (431) and answers malformed requests in the JSON error shape.
        http=limited_http_protocol(settings.max_header_bytes, settings.instance_name),
    )
    return 0


def _model(args: argparse.Namespace) -> int:
    import uvicorn

    from .model.server import create_model_app
    from .observe.logs import configure_logging

    overrides = {} if args.busy is None else {"model_busy": args.busy}
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format, "model")
    uvicorn.run(create_model_app(settings), host=args.host, port=args.port,
                server_header=False, access_log=settings.access_log,
                log_level=settings.log_level, timeout_graceful_shutdown=5)
    return 0


TOOLS_HINT = "pip install 'chatlimit[tools]'"


def tools_installed() -> bool:
    """The tools extra brings matplotlib (bench's chart) and httpx; the app does not need
    matplotlib (httpx arrives with the openai SDK, so it cannot tell the extra apart)."""
    return importlib.util.find_spec("matplotlib") is not None


def _needs_tools(args: argparse.Namespace) -> int:
    print(f"chatlimit {args.command} needs the tools extra: {TOOLS_HINT}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatlimit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chatlimit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the chat app (one process)")
    serve.add_argument("--host", help="address to bind (default: $HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: $PORT or 8000)")
    serve.set_defaults(func=_serve)
    model = commands.add_parser(
        "model", help="serve the demo model as an OpenAI-compatible API (/v1/chat/completions)"
    )
    model.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    model.add_argument("--port", type=int, default=8001, help="port to listen on (8001)")
    model.add_argument("--busy", type=int, metavar="SECONDS",
                       help="answer every completion 429 with this Retry-After ($MODEL_BUSY)")
    model.set_defaults(func=_model)
    if tools_installed():
        from .tools import compare, stack_cli
        from .tools.bench import cli as bench

        stack_cli.add_parser(commands)
        compare.add_parser(commands)
        bench.add_parser(commands)
    else:
        for name, summary in TOOLS.items():
            stub = commands.add_parser(name, help=f"{summary} (needs {TOOLS_HINT})",
                                       add_help=False, prefix_chars="\0")
            stub.add_argument("rest", nargs=argparse.REMAINDER)
            stub.set_defaults(func=_needs_tools)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"chatlimit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
