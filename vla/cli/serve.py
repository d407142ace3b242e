"""vla-serve checkpoint=runs/demo [host=127.0.0.1] [port=8765] [token=SECRET]

Serves a checkpoint over a websocket (msgpack + numpy, never pickle); GET /healthz answers 200."""

import asyncio
import logging

from vla.cli.config import cli_main, load, load_checkpoint, print_usage, usage_requested
from vla.runtime.server import PolicyServer, checkpoint_id


def _main() -> None:
    if usage_requested():
        return print_usage("serve", __doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load("serve")
    policy = load_checkpoint(cfg.checkpoint, "checkpoint", device=cfg.device, dtype=cfg.dtype, compile=cfg.compile)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and cfg.token is None:
        logging.warning("serving on %s without a token: anyone who can reach it can drive the policy", cfg.host)
    server = PolicyServer(policy, cfg, checkpoint_id(cfg.checkpoint))
    try:
        asyncio.run(server.serve_forever())
    except KeyboardInterrupt:
        pass


def main() -> None:
    cli_main("vla-serve", _main)


if __name__ == "__main__":
    main()
