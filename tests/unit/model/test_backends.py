"""Reading an OpenAI-compatible stream's server-sent events, whatever way the bytes arrive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatlimit.model.backends import sse_data


def _data(*chunks: bytes) -> list[bytes]:
    async def arrive() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def read() -> list[bytes]:
        return [data async for data in sse_data(arrive())]

    return asyncio.run(read())


def test_each_event_gives_its_data_however_the_bytes_are_cut() -> None:
    stream = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'
    whole = _data(stream)
    assert whole == [b'{"a":1}', b'{"b":2}', b"[DONE]"]
    assert _data(*[stream[i:i + 1] for i in range(len(stream))]) == whole  # a byte at a time
    assert _data(stream[:9], stream[9:20], stream[20:]) == whole


@pytest.mark.parametrize("stream", [
    pytest.param(b'data: {"a":1}\r\n\r\ndata: [DONE]\r\n\r\n', id="CRLF"),
    pytest.param(b': keep-alive\n\nevent: chunk\nid: 7\ndata: {"a":1}\n\ndata: [DONE]\n\n',
                 id="comments and other fields"),
    pytest.param(b'data:{"a":1}\n\ndata: [DONE]\n\n', id="no space after the colon"),
])
def test_line_endings_comments_and_other_fields_are_the_specs(stream: bytes) -> None:
    assert _data(stream) == [b'{"a":1}', b"[DONE]"]


def test_an_event_the_stream_ends_inside_of_is_dropped_as_the_spec_says() -> None:
    assert _data(b'data: {"a":1}\n\ndata: {"b":') == [b'{"a":1}']
    assert _data(b'data: {"a":1}\n\ndata: {"b":2}\n') == [b'{"a":1}']  # no blank line yet


def test_an_event_of_several_data_lines_is_joined_by_newlines() -> None:
    assert _data(b'data: {"a":\ndata: 1}\n\n') == [b'{"a":\n1}']


def test_an_event_longer_than_the_bound_is_refused_not_held_forever() -> None:
    from chatlimit.model.backends import SSE_EVENT_BOUND
    from chatlimit.model.reply import UpstreamCut

    with pytest.raises(UpstreamCut):  # one endless line
        _data(b"data: " + b"x" * SSE_EVENT_BOUND)
    with pytest.raises(UpstreamCut):  # endless lines of one event
        _data(*[b"data: " + b"x" * 1000 + b"\n"] * (SSE_EVENT_BOUND // 1000 + 1))
    assert len(_data(*[b"data: " + b"x" * 1000 + b"\n\n"] * 2000)) == 2000  # events end
