"""vla-serve checkpoint=runs/demo [host=127.0.0.1] [port=8765] [token=SECRET]

Serves a checkpoint over a websocket (msgpack + numpy, never pickle); GET /healthz answers 200."""

import asyncio
import logging

from vla.cli.config import UsageError, cli_main, load, print_usage, require_path, usage_requested
from vla.runtime.server import PolicyServer, checkpoint_id


def _main() -> None:
    if usage_requested():
        return print_usage("serve", __doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load("serve")
    require_path(cfg.checkpoint, "checkpoint")
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and cfg.token is None:
        logging.warning("serving on %s without a token: anyone who can reach it can drive the policy", cfg.host)
    from vla.policies.registry import load_policy
    from vla.policies.vla_policy import CheckpointError

    try:
        policy = load_policy(cfg.checkpoint, device=cfg.device, dtype=cfg.dtype, compile=cfg.compile)
    except CheckpointError as e:  # not a checkpoint, or one these options cannot serve: the user's mistake
        raise UsageError(f"checkpoint {e}") from None
    server = PolicyServer(policy, cfg, checkpoint_id(cfg.checkpoint))
    try:
        asyncio.run(server.serve_forever())
    except KeyboardInterrupt:
        pass


def main() -> None:
    cli_main("vla-serve", _main)


if __name__ == "__main__":
    main()
