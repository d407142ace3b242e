"""openpi's own robot client (the `openpi-client` package from the registry) drives `vla-serve` unchanged."""

import numpy as np
import pytest
from conftest import TINY_IMAGE, TINY_INSTRUCTIONS, fake_stats, tiny_model_config, vla_serve

from vla.envs.metaworld import metaworld_schema
from vla.policies.vla_policy import VLAPolicy

websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy",
                                              reason="make setup installs openpi-client")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`vla-serve` on loopback (the console script's module, as a user runs it) for a tiny checkpoint."""
    checkpoint = tmp_path_factory.mktemp("ckpt")
    VLAPolicy.create(tiny_model_config(), metaworld_schema(TINY_IMAGE, "corner2"), fake_stats(),
                     TINY_INSTRUCTIONS).save_pretrained(checkpoint)
    with vla_serve(checkpoint, "token=secret") as port:
        yield port


def observation(rng):
    return {"observation.images.corner2": rng.integers(0, 256, (TINY_IMAGE, TINY_IMAGE, 3), dtype=np.uint8),
            "observation.state": rng.standard_normal(4).astype(np.float32), "prompt": "close it"}


def test_openpi_websocket_client_infers_through_vla_serve(served):
    client = websocket_client_policy.WebsocketClientPolicy("127.0.0.1", served, api_key="secret")
    metadata = client.get_server_metadata()  # the metadata frame on connect
    assert metadata["chunk_size"] == 4 and metadata["n_action_steps"] == 2
    rng = np.random.default_rng(0)
    for _ in range(3):
        reply = client.infer(observation(rng))
        actions = reply["actions"]
        assert isinstance(actions, np.ndarray) and actions.dtype == np.float32 and actions.shape == (4, 4)
        assert np.all(np.isfinite(actions)) and reply["server_timing"]["infer_ms"] > 0
    bad = observation(rng)
    bad["observation.state"] = np.zeros(5, np.float32)
    with pytest.raises(RuntimeError, match="'observation.state': expected shape \\(4,\\), got \\(5,\\)"):
        client.infer(bad)  # an error reaches openpi's client as its error text...
    assert client.infer(observation(rng))["actions"].shape == (4, 4)  # ...and the connection keeps serving


def test_our_client_still_works_beside_it(served):
    from vla.runtime.client import PolicyClient

    with PolicyClient(f"ws://127.0.0.1:{served}", token="secret") as client:
        obs = observation(np.random.default_rng(1))
        obs["task"] = obs.pop("prompt")
        assert client.infer(obs).shape == (4, 4)
