"""The SSE decoder against the WHATWG examples, a reference parser and arbitrary chunking."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth.streaming import ServerSentEvent, SSEDecoder, SSELimitError


def decode_all(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def reference(stream: bytes) -> list[ServerSentEvent]:
    """A direct, non-incremental reading of the spec's algorithm."""
    text = stream.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # the text after the last line end is an incomplete line: discarded
    events = []
    data, event, last_id, retry = "", "", "", None
    for line in lines:
        if line == "":
            if data:
                events.append(ServerSentEvent(data[:-1], event or "message", last_id, retry))
            data, event, retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data += value + "\n"
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


def test_spec_example_multiline_data_and_comments() -> None:
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third\n\n"
    )
    assert decode_all(stream) == [
        ServerSentEvent("first event", id="1"),
        ServerSentEvent("second event", id=""),
        ServerSentEvent(" third", id=""),
    ]


def test_spec_example_two_data_lines_join_with_newline() -> None:
    assert decode_all(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [ServerSentEvent("YHOO\n+2\n10")]


def test_empty_data_field_dispatches_empty_string_but_blank_block_does_not() -> None:
    assert decode_all(b"data\n\ndata:\ndata\n\n\n\nevent: x\n\n") == [
        ServerSentEvent(""),
        ServerSentEvent("\n"),
    ]


def test_event_type_retry_and_unknown_fields() -> None:
    stream = (
        b"event: content_block_delta\nretry: 1500\nfoo: bar\ndata: {}\n\ndata: y\nretry: 1x\n\n"
    )
    assert decode_all(stream) == [
        ServerSentEvent("{}", event="content_block_delta", retry=1500),
        ServerSentEvent("y"),
    ]


def test_crlf_cr_and_lf_line_ends_mix() -> None:
    assert decode_all(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == [
        ServerSentEvent("a"),
        ServerSentEvent("b"),
        ServerSentEvent("c"),
    ]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # Were the LF read as a second line end, "data: a" would dispatch twice / early.
    assert decode_all(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [ServerSentEvent("a\nb")]


def test_bom_only_at_start() -> None:
    events = decode_all(b"\xef", b"\xbb", b"\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\n")
    # The second BOM is not at the stream start: it makes the line's field name unknown.
    assert events == [ServerSentEvent("x")]


def test_multibyte_utf8_split_across_chunks() -> None:
    payload = "data: héllo — 世界\n\n".encode()
    split = payload.index("世".encode()) + 1
    assert decode_all(payload[:split], payload[split:]) == [ServerSentEvent("héllo — 世界")]


def test_incomplete_event_at_end_is_pending_and_discarded_on_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: done\n\ndata: partial") == [ServerSentEvent("done")]
    assert decoder.pending
    decoder.close()
    assert not decoder.pending
    assert decoder.feed(b"\n\n") == []


def test_id_persists_and_null_id_ignored() -> None:
    events = decode_all(b"id: 7\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\n")
    assert [e.id for e in events] == ["7", "7", "7"]


line_parts = st.sampled_from(
    [
        "data: x",
        "data:y",
        "data",
        'data: {"k": [1, 2]}',
        "event: delta",
        "event",
        "id: 3",
        "id",
        "retry: 250",
        "retry: x",
        ": comment",
        ":",
        "other: z",
        "data: é世",
        "",
    ]
)
line_ends = st.sampled_from(["\n", "\r\n", "\r"])
streams = st.lists(st.tuples(line_parts, line_ends), max_size=30).map(
    lambda items: "".join(p + e for p, e in items).encode()
)


@settings(max_examples=300, deadline=None)
@given(stream=streams, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_chunking_matches_reference(stream: bytes, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    assert decode_all(*chunks) == reference(stream)


@settings(max_examples=200, deadline=None)
@given(stream=st.binary(max_size=300), cut=st.integers(min_value=0, max_value=300))
def test_arbitrary_bytes_split_anywhere_match_reference(stream: bytes, cut: int) -> None:
    assert decode_all(stream[:cut], stream[cut:]) == reference(stream)


def test_long_line_in_small_chunks_is_linear() -> None:
    """8 MiB of one line in 16-byte chunks: re-joining the buffer per chunk took ~15 minutes."""
    payload = b"data: " + b"x" * (8 * 1024 * 1024) + b"\n\n"
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for i in range(0, len(payload), 16):
        events.extend(decoder.feed(payload[i : i + 16]))
    assert len(events) == 1 and len(events[0].data) == 8 * 1024 * 1024
    assert not decoder.pending


def test_many_short_lines_in_one_big_chunk() -> None:
    payload = b"data: a\n\n" * 200_000
    assert len(SSEDecoder(max_line_bytes=16, max_event_bytes=16).feed(payload)) == 200_000


def test_line_limit_stops_an_endless_line() -> None:
    decoder = SSEDecoder(max_line_bytes=1024)
    with pytest.raises(SSELimitError, match="max_line_bytes=1024"):
        for _ in range(1_000_000):  # would be 16 MB without the limit
            decoder.feed(b"data: xxxxxxxxxx")
    assert not decoder.pending  # what it held is dropped


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_line_limit_is_exact(chunk_size: int) -> None:
    """A line of exactly the limit passes (its terminator not counted); one byte more fails."""
    fits = b"data: " + b"y" * 94 + b"\r\n\r\n"
    assert decode_chunks(SSEDecoder(max_line_bytes=100), fits, chunk_size) == [
        ServerSentEvent("y" * 94)
    ]
    with pytest.raises(SSELimitError, match="max_line_bytes=100"):
        decode_chunks(
            SSEDecoder(max_line_bytes=100), b"data: a\n" + fits[:6] + b"z" + fits[6:], chunk_size
        )


@pytest.mark.parametrize("chunk_size", [1, 5, 1 << 20])
def test_event_limit_counts_the_data_of_one_event(chunk_size: int) -> None:
    """Data lines add up within one event and start again at the next."""
    ok = b"data: 12345\ndata: 67890\n\n" * 3
    events = decode_chunks(SSEDecoder(max_event_bytes=10), ok, chunk_size)
    assert events == [ServerSentEvent("12345\n67890")] * 3
    with pytest.raises(SSELimitError, match="max_event_bytes=10"):
        decode_chunks(SSEDecoder(max_event_bytes=10), b"data: 12345\ndata: 678901\n\n", chunk_size)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        SSEDecoder(max_line_bytes=0)
    with pytest.raises(ValueError, match="max_event_bytes"):
        SSEDecoder(max_event_bytes=-1)
    assert issubclass(SSELimitError, ValueError)


def decode_chunks(decoder: SSEDecoder, stream: bytes, size: int) -> list[ServerSentEvent]:
    events: list[ServerSentEvent] = []
    for i in range(0, len(stream), size):
        events.extend(decoder.feed(stream[i : i + size]))
    return events


@settings(max_examples=200, deadline=None)
@given(stream=streams, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_generous_limits_change_nothing(stream: bytes, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(stream)) for c in cuts})
    decoder = SSEDecoder(max_line_bytes=32, max_event_bytes=1024)
    events: list[ServerSentEvent] = []
    for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True):
        events.extend(decoder.feed(stream[a:b]))
    assert events == reference(stream)
