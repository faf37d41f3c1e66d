#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Writes the seed inputs of fuzz_vu_backend into tests/fuzz/corpus/vu_backend/.

The layout is described at the top of fuzz_vu_backend.c: messages, each a fd
spec byte, the 12-byte header and the payload; a 0xff spec ends them. Guest
memory is the input repeated over 64 KiB, so each seed is padded to exactly
IMAGE bytes (under the fuzzer's max_len) with its rings and buffers at their offsets. Run it again
after changing that layout.
"""
import os
import struct

MEM = 0x10000
GPA, QVA = 0x100000, 0x7F0000000000
DESC, AVAIL, USED, BUF = 0x1000, 0x1400, 0x1600, 0x1800
IMAGE = 0x2000  # guest memory repeats the input: offsets hold in every 8 KiB
FD_MEM, FD_EVENT, FD_PIPE_W, FD_PIPE_R = range(4)
NEED_REPLY = 8
VERSION_1, EVENT_IDX, INDIRECT, PROTOCOL = 1 << 32, 1 << 29, 1 << 28, 1 << 30


def msg(req, payload=b"", fds=(), flags=0, size=None):
    spec = len(fds)
    for i, kind in enumerate(fds):
        spec |= kind << (2 + 2 * i)
    size = len(payload) if size is None else size
    return bytes([spec]) + struct.pack("<III", req, 1 | flags, size) + payload


def u64(v):
    return struct.pack("<Q", v)


def state(index, num):
    return struct.pack("<II", index, num)


def region(gpa, size, uva, off):
    return struct.pack("<QQQQ", gpa, size, uva, off)


def negotiate(extra=0):
    return (msg(1) + msg(15) + msg(16, u64((1 << 20) - 1)) + msg(3) +
            msg(2, u64(VERSION_1 | EVENT_IDX | INDIRECT | PROTOCOL | extra),
                flags=NEED_REPLY) +
            msg(5, struct.pack("<II", 1, 0) + region(GPA, MEM, QVA, 0), (FD_MEM,)))


def ring(q=0, num=16):
    addr = struct.pack("<IIQQQQ", q, 0, QVA + DESC, QVA + USED, QVA + AVAIL, GPA + USED)
    return (msg(8, state(q, num)) + msg(9, addr) + msg(10, state(q, 0)) +
            msg(13, u64(q), (FD_EVENT,)) + msg(14, u64(q), (FD_EVENT,)) +
            msg(12, u64(q), (FD_EVENT,)) + msg(18, state(q, 1)))


def image(msgs, chains):
    out = bytearray(msgs + b"\xff")
    assert len(out) < DESC
    out += bytes(IMAGE - len(out))
    descs, avail = chains
    for i, (addr, length, flags, nxt) in enumerate(descs):
        struct.pack_into("<QIHH", out, DESC + 16 * i, addr, length, flags, nxt)
    struct.pack_into("<HH", out, AVAIL, 0, len(avail))
    for i, head in enumerate(avail):
        struct.pack_into("<H", out, AVAIL + 4 + 2 * i, head)
    return bytes(out)


def main():
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "vu_backend")
    os.makedirs(d, exist_ok=True)
    # A readable then a writable buffer; an indirect table of two.
    chains = ([(GPA + BUF, 16, 1, 1), (GPA + BUF + 0x100, 32, 2, 0),
               (GPA + BUF + 0x200, 32, 4, 0)], [0, 2])
    seeds = {
        "ring-two-chains": image(negotiate() + ring(), chains),
        "two-queues-config": image(
            negotiate() + ring(0) + ring(1, 32) +
            msg(24, struct.pack("<III", 0, 8, 0) + bytes(8)) +
            msg(17) + msg(36), chains),
        "device-state-save-load": image(
            negotiate() + ring() + msg(11, state(0, 0)) +
            msg(42, struct.pack("<II", 0, 0), (FD_PIPE_W,)) + msg(43) +
            msg(42, struct.pack("<II", 1, 0), (FD_PIPE_R,)) + b"VMMVUST1" + bytes(24) +
            msg(43), chains),
        "inflight-memslots-log": image(
            negotiate(1 << 26) +
            msg(31, struct.pack("<QQHHI", 0, 0, 2, 16, 0)) +
            msg(38, u64(0) + region(GPA, MEM, QVA, 0)) +
            msg(37, u64(0) + region(GPA, MEM // 2, QVA, 0), (FD_MEM,)) +
            msg(37, u64(0) + region(GPA + MEM // 2, MEM // 2, QVA + MEM // 2, MEM // 2),
                (FD_MEM,)) +
            msg(6, struct.pack("<QQ", 4096, 0), (FD_MEM,)) + ring() +
            msg(32, struct.pack("<QQHHI", 2 * 1088, 0, 2, 16, 0), (FD_MEM,)), chains),
        "bad-fd-count": image(negotiate() + msg(5, struct.pack("<II", 2, 0) +
                                                 region(GPA, 4096, QVA, 0) +
                                                 region(0, 4096, 0, 0), (FD_MEM,)), chains),
        "oversized": image(negotiate() + msg(2, u64(0), size=0x10000), chains),
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
