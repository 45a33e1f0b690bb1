"""Reads gunn's OTLP/JSON span files with the OpenTelemetry protobufs (PyPI opentelemetry-proto):
every line must parse strictly into a TracesData (json_format, unknown fields refused). OTLP/JSON
writes trace and span ids as hex, which json_format would read as base64: each is checked to be
lowercase hex of the right length and re-encoded to base64 before parsing. Prints one JSON
summary of the spans of TRACE_ID (hex): name, service, span id, parent span id.

  otlp_check.py TRACE_ID FILE...
"""
import base64
import json
import re
import sys

from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

HEX = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def rehex(span):
    for key, n in HEX.items():
        if key not in span:
            continue
        v = span[key]
        if not re.fullmatch("[0-9a-f]{%d}" % n, v):
            raise ValueError("%s is not %d lowercase hex digits: %r" % (key, n, v))
        span[key] = base64.b64encode(bytes.fromhex(v)).decode()


def main():
    want = bytes.fromhex(sys.argv[1])
    spans, lines, traces = [], 0, set()
    for path in sys.argv[2:]:
        with open(path) as f:
            for line in f:
                lines += 1
                obj = json.loads(line)
                for rs in obj.get("resourceSpans", []):
                    for ss in rs.get("scopeSpans", []):
                        for s in ss.get("spans", []):
                            rehex(s)
                data = json_format.Parse(json.dumps(obj), TracesData())
                for rs in data.resource_spans:
                    service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            traces.add(s.trace_id.hex())
                            if s.trace_id != want:
                                continue
                            if s.end_time_unix_nano < s.start_time_unix_nano:
                                raise ValueError("span %s ends before it starts" % s.name)
                            spans.append({"name": s.name, "service": service, "span_id": s.span_id.hex(),
                                          "parent": s.parent_span_id.hex(), "kind": s.kind,
                                          "attributes": {a.key: json_format.MessageToDict(a.value) for a in s.attributes}})
    print(json.dumps({"lines": lines, "spans": spans, "trace_ids": len(traces)}, sort_keys=True))


main()
