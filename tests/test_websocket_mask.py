"""server/web/websocket_mask.py gives the bytes eventlet's own unmasking gives."""

from __future__ import annotations

import random

from eventlet.websocket import RFC6455WebSocket

from server.web.websocket_mask import apply_mask

ORIGINAL = RFC6455WebSocket.__dict__["_apply_mask"].__func__  # before any install()


def test_the_same_bytes_as_eventlets_for_every_length_and_offset() -> None:
    rng = random.Random(5)
    for length in [0, 1, 2, 3, 4, 5, 7, 8, 125, 126, 2048, 65_537]:
        data = bytes(rng.randrange(256) for _ in range(length))
        mask = bytes(rng.randrange(256) for _ in range(4))
        for offset in (0, 1, 2, 3, 6):
            for cut in {length, max(length - 3, 0)}:
                want = ORIGINAL(data, mask, length=cut, offset=offset)
                assert apply_mask(data, mask, length=cut, offset=offset) == want
                assert apply_mask(bytearray(data), mask, cut, offset) == want
        assert apply_mask(data, mask) == ORIGINAL(data, mask)
