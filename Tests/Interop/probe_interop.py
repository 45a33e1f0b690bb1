"""Second protobuf implementation for gunn's wire interop tests (Python protobuf, code generated
by protoc --python_out from proto/). Usage, with PYTHONPATH holding the generated code:
  probe_interop.py check-probe FILE         FILE (written by GunnWire) equals the expected Probe
  probe_interop.py write-probe FILE         write the expected Probe plus an unknown field 99
  probe_interop.py check-frame FILE         FILE is a Frame with a Hello as GunnWire's test writes it
  probe_interop.py write-frame FILE         write a Frame with an AppendBatch of two entries and unknown fields
"""
import sys
from gunn.v1 import gunn_pb2, probe_pb2

UNKNOWN_99 = bytes([0x98, 0x06, 0xB9, 0x60])  # field 99, varint 12345


def expected_probe():
    p = probe_pb2.Probe()
    p.i32 = -5; p.i64 = -1234567890123; p.u32 = 4000000000; p.u64 = 2**64 - 1; p.s32 = -42; p.s64 = -9000000000000000
    p.f32 = 0xDEADBEEF; p.f64 = 0x0123456789ABCDEF; p.sf32 = -7; p.sf64 = -8; p.flag = True
    p.text = "héllo ✓"; p.blob = bytes([0, 1, 2, 255]); p.real32 = 1.5; p.real64 = -2.25e-300; p.color = probe_pb2.Probe.GREEN
    p.inner.name = "in"; p.inner.delta = -3
    p.packed_i64.extend([1, -1, 300]); p.packed_f64.extend([0.5, -1e10]); p.names.extend(["a", "b"])
    a = p.inners.add(); a.name = "x"; a.delta = 1
    b = p.inners.add(); b.name = "y"
    p.choice_number = 7
    return p


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "check-probe":
        data = open(path, "rb").read()
        got = probe_pb2.Probe.FromString(data)
        reserialized = got.SerializeToString()
        if UNKNOWN_99 not in reserialized:
            print("unknown field 99 was not preserved"); return 1
        got.DiscardUnknownFields()
        if got != expected_probe():
            print("probe differs:\n" + str(got)); return 1
        print("ok"); return 0
    if mode == "write-probe":
        open(path, "wb").write(expected_probe().SerializeToString() + UNKNOWN_99)
        return 0
    if mode == "check-frame":
        f = gunn_pb2.Frame.FromString(open(path, "rb").read())
        ok = (f.id == 7 and f.epoch == 3 and f.traceparent == "00-abc-01" and f.WhichOneof("body") == "hello"
              and f.hello.protocol_major == 1 and f.hello.protocol_minor == 2 and f.hello.role == "agent"
              and list(f.hello.capabilities) == ["deltas", "tokens"])
        print("ok" if ok else "frame differs:\n" + str(f)); return 0 if ok else 1
    if mode == "write-frame":
        f = gunn_pb2.Frame(id=9, epoch=4)
        for seq in (1, 2):
            e = f.append.entries.add()
            e.global_seq = seq; e.sim_time = 1.5 * seq; e.wall_time = 1000.25; e.effect = b'{"kind":"Speak"}'
            e.checksum = "ab" * 32; e.req_id = "r%d" % seq; e.agent_id = "a"; e.world_id = "w"
        # A newer peer's field (number 900, length-delimited) inside Frame, and one inside an entry.
        body = f.SerializeToString()
        open(path, "wb").write(body + bytes([0xA2, 0x38, 0x03, 0x01, 0x02, 0x03]))  # Frame field 900 = 3 bytes
        return 0
    print("unknown mode " + mode); return 2


if __name__ == "__main__":
    sys.exit(main())
