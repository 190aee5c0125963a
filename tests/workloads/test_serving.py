"""Serving interfaces: per-request KV caches batch correctly; item servers batch requests."""

from __future__ import annotations

import torch

from tests.workloads.helpers import build
from workloads.serving import ItemServer, TokenServer


def test_requests_batched_across_slots_get_the_logits_of_their_own_full_forward() -> None:
    instance, _ = build("gpt")
    model = instance.model.eval()  # type: ignore[attr-defined]
    tokens, _ = instance.batch  # type: ignore[attr-defined]
    a, b = tokens[0:1], tokens[1:2]
    with torch.inference_mode():
        full_a, full_b = model(a), model(b)
        cache = model.new_slots(3, a.shape[1], torch.float32)
        cache.use([2])
        first_a = model(a[:, :5], cache)  # slot 2: a 5-token prompt
        cache.use([0])
        first_b = model(b[:, :9], cache)  # slot 0: a 9-token prompt
        steps = []
        for i in range(4):  # both decode together, each at its own position
            cache.use([2, 0])
            step = torch.cat([a[:, 5 + i : 6 + i], b[:, 9 + i : 10 + i]])
            steps.append(model(step, cache))
    torch.testing.assert_close(first_a, full_a[:, :5], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(first_b, full_b[:, :9], rtol=1e-4, atol=1e-4)
    for i, step in enumerate(steps):
        torch.testing.assert_close(step[0:1], full_a[:, 5 + i : 6 + i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(step[1:2], full_b[:, 9 + i : 10 + i], rtol=1e-4, atol=1e-4)
    assert cache.lengths == [13, 0, 9]


def test_gpt_server_prefills_decodes_and_frees_slots() -> None:
    instance, _ = build("gpt")
    server = instance.server(2)
    assert isinstance(server, TokenServer)
    server.prefill(0, 6, request=0)
    server.prefill(1, 3, request=1)
    server.decode([0, 1])
    assert server.cache.lengths == [7, 4]  # type: ignore[attr-defined]
    assert instance.last is not None and instance.last.shape[0] == 2
    server.release(0)
    assert server.cache.lengths == [0, 4]  # type: ignore[attr-defined]
    assert instance.nonfinite_reason() is None


def test_image_workloads_answer_a_batch_of_requests_in_one_call() -> None:
    for name in ("convnet", "dit"):
        instance, _ = build(name)
        server = instance.server(4)
        assert isinstance(server, ItemServer)
        server.run(3)
        assert instance.last is not None and instance.last.shape[0] == 3


def test_workloads_without_serving_say_so() -> None:
    instance, _ = build("mlp")
    assert instance.server(4) is None
