"""`python -m pushgate.lab`: run the provider lab without the pushgate CLI."""

from __future__ import annotations

import argparse
import pathlib

from pushgate.lab.main import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pushgate.lab", description="Run the pushgate provider lab."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8687)
    parser.add_argument("--write-credentials", type=pathlib.Path, default=None, metavar="DIR")
    parser.add_argument("--lean", action="store_true", help="keep counters only, no ledger items")
    parser.add_argument(
        "--apns-port",
        type=int,
        default=None,
        help="APNs simulator port, HTTP/2 over TLS (default: --port + 1); h2c listens on the next port",
    )
    parser.add_argument(
        "--tls-port",
        type=int,
        default=None,
        help="FCM, OAuth and Web Push over TLS, HTTP/2 or 1.1 (default: --port + 3); "
        "HMS, WNS and MiPush over TLS, HTTP/1.1, on the next port",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="serve FCM, OAuth, Web Push, HMS, WNS and MiPush on --port in cleartext HTTP/1.1 (benchmarks)",
    )
    args = parser.parse_args(argv)
    run(
        host=args.host,
        port=args.port,
        write_credentials=args.write_credentials,
        lean=args.lean,
        apns_port=args.apns_port,
        tls_port=args.tls_port,
        plain=args.plain,
    )


if __name__ == "__main__":
    main()
