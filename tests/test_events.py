"""The logged point's own encoders against the libraries they stand in for: the scalar event's
bytes against protobuf's serialization of the same Event, the metrics.jsonl line against
json.dumps of the values with non-finite numbers as strings."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary

from gradexp.record.events import EventFile, scalars_event
from gradexp.record.logger import _finite_or_str, _json_line

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # float64: beyond float32's range too
    st.floats(width=32),
    st.sampled_from([0.0, -0.0, 3.4028235e38, 3.4028236e38, 1e300, 1e-46, 7e-46]),
    st.integers(-(2**60), 2**60),
    st.booleans(),
)
tags = st.text(min_size=1, max_size=200)  # past 127 bytes the lengths take two varint bytes
steps = st.one_of(st.integers(0, 2**63 - 1), st.integers(-(2**63), -1), st.just(0))
wall_times = st.one_of(st.just(0.0), st.floats(0, 4e9), st.floats(allow_nan=False))


def protobuf(values: dict, step: int, wall_time: float) -> bytes:
    summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
    return Event(summary=summary, step=step, wall_time=wall_time).SerializeToString()


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(tags, values, min_size=1, max_size=24), steps, wall_times)
def test_a_scalar_event_is_the_bytes_protobuf_serializes(points, step, wall_time):
    assert scalars_event(points, step, wall_time) == protobuf(points, step, wall_time)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=20), values, max_size=24))
def test_a_jsonl_line_is_json_with_non_finite_numbers_as_strings(points):
    record = {"step": 3, "time": 0.25} | points
    assert _json_line(record) == json.dumps(_finite_or_str(record))
    back = json.loads(_json_line(record))
    for k, v in points.items():
        got = float(back[k]) if isinstance(back[k], str) else back[k]
        assert got == v or (math.isnan(got) and math.isnan(v))


def test_scalar_events_read_back_as_their_float32_values(tmp_path):
    events = EventFile(tmp_path)
    points = [({"a": 1.5, "b/c": -0.1, "huge": 1e300, "nan": math.nan}, 7, 1.7e9),
              ({"a": 2.0}, 0, 1.7e9 + 1), ({"a": 3.0, "b/c": 2**40}, 300, 1.7e9 + 2)]  # fmt: skip
    for point in points:
        events.add_scalars(*point)
    events.close()
    read = [Event.FromString(r) for r in RawEventFileLoader(str(events.path)).Load()]
    read = [e for e in read if e.HasField("summary")]  # (the first is the file's version)
    assert [(e.step, e.wall_time) for e in read] == [(s, t) for _, s, t in points]
    for event, (point, _, _) in zip(read, points):
        got = {v.tag: v.simple_value for v in event.summary.value}
        with np.errstate(over="ignore"):
            want = {k: float(np.float64(v).astype(np.float32)) for k, v in point.items()}
        assert list(got) == list(point)
        assert all(got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k]))
                   for k in got)  # fmt: skip
    assert read[0].summary.value[2].simple_value == math.inf  # float32 overflows to inf
