"""`voicelab-studio`: the studio service's two processes.

serve   the web API and page (uvicorn)
worker  a clone worker (Celery, one clone at a time); start as many as there are machines
"""

from __future__ import annotations

import argparse
import os
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicelab-studio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="the web API and the technician's page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8600)
    worker = sub.add_parser("worker", help="a clone worker; settings come from HML_STUDIO_* like the API's")
    worker.add_argument("--name", default=f"clone-{os.getpid()}@{socket.gethostname()}")
    args = parser.parse_args(argv)
    if args.command == "serve":
        import uvicorn

        from .app import create_app

        uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
        return 0
    from .worker import QUEUE, celery

    celery.worker_main(
        ["worker", "--pool", "solo", "--concurrency", "1", "-Q", QUEUE, "-n", args.name, "--loglevel", "INFO"]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
