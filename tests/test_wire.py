"""server/wire.py: the packets the pages get are the JSON they got before."""

from __future__ import annotations

import json
import math

from socketio import packet

from server.data import DynamicData
from server.wire import JsonPacket


def test_a_sample_is_written_as_the_default_packet_writes_it() -> None:
    sample = DynamicData(top_processes=3).sample()
    ours = JsonPacket(packet.EVENT, data=["metrics", sample], namespace="/").encode()
    theirs = packet.Packet(packet.EVENT, data=["metrics", sample], namespace="/").encode()
    assert ours[0] == theirs[0] == str(packet.EVENT)  # a plain event, not binary
    assert json.loads(ours[1:]) == json.loads(theirs[1:]) == ["metrics", sample]


def test_what_json_cannot_say_is_still_sent() -> None:
    data = ["x", {"nan": math.nan, "big": 2**70, 7: "int key"}]
    encoded = JsonPacket(packet.EVENT, data=data).encode()
    # orjson refuses the 70-bit int: the json module writes the whole packet instead.
    assert encoded == '2["x",{"nan":NaN,"big":1180591620717411303424,"7":"int key"}]'
    assert JsonPacket(packet.EVENT, data=["x", {"nan": math.nan}]).encode() == '2["x",{"nan":null}]'


def test_incoming_packets_are_read_as_before() -> None:
    pkt = JsonPacket(encoded_packet='2["firehose_subscribe",{"host":"a","source":"b"}]')
    assert pkt.data == ["firehose_subscribe", {"host": "a", "source": "b"}]
