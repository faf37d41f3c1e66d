#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Writes the seed inputs of fuzz_virtq into tests/fuzz/corpus/virtq/.

The layout is described at the top of fuzz_virtq.c: a 32-byte header (queue
size, flags, ring offsets, regions, 16 operation bytes), then guest RAM at
GPA 0x10000 (16 KiB). Run it again after changing that layout.
"""
import os
import struct

GPA = 0x10000
RAM = 0x4000
DESC, AVAIL, USED, TABLE, BUF = 0x000, 0x400, 0x600, 0x700, 0x800
NEXT, WRITE, INDIRECT = 1, 2, 4
F_EVENT_IDX, F_INDIRECT, F_TWO_REGIONS, F_HOLE, F_DESC_AT_END = 1, 2, 4, 8, 0x20
(POP_PUSH, POP_HOLD, POP_UNPOP, PUSH_HELD,
 NOTIFY, SET_NOTIFY, DRIVER_KICK, DRAIN) = range(8)


def op(which, param=0):
    return which | param << 3


class Seed:
    def __init__(self, size_log2, flags=0, split=0, gap=0):
        self.size = 1 << size_log2
        self.hdr = bytearray(32)
        self.hdr[0] = size_log2
        self.hdr[1] = flags
        struct.pack_into('<HHHHH', self.hdr, 2, DESC, AVAIL, USED, split, gap)
        self.ram = bytearray(0xa00)
        self.avail_idx = 0

    def desc(self, i, addr, length, flags=0, nxt=0, table=DESC):
        struct.pack_into('<QIHH', self.ram, table + 16 * i, addr, length, flags, nxt)

    def avail(self, head):
        struct.pack_into('<H', self.ram, AVAIL + 4 + 2 * (self.avail_idx % self.size), head)
        self.avail_idx += 1
        struct.pack_into('<H', self.ram, AVAIL + 2, self.avail_idx & 0xffff)

    def ops(self, *ops):
        self.hdr[16:16 + len(ops)] = bytes(ops)

    def write(self, name):
        d = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'virtq')
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), 'wb') as f:
            f.write(bytes(self.hdr) + bytes(self.ram))


s = Seed(3)
s.desc(0, GPA + BUF, 16, NEXT, 1)
s.desc(1, GPA + BUF + 0x100, 32, WRITE)
s.avail(0)
s.ops(op(POP_PUSH), op(NOTIFY), op(SET_NOTIFY, 1), op(DRIVER_KICK, 1), op(POP_PUSH, 3),
      op(NOTIFY))
s.write('direct-out-in')

s = Seed(3, F_EVENT_IDX | F_INDIRECT)
s.desc(0, GPA + BUF, 8, NEXT, 2, TABLE)
s.desc(2, GPA + BUF + 0x10, 8, NEXT | WRITE, 1, TABLE)
s.desc(1, GPA + BUF + 0x20, 8, WRITE, 0, TABLE)
s.desc(5, GPA + TABLE, 48, INDIRECT)
s.avail(5)
s.avail(5)
s.ops(op(POP_HOLD), op(POP_UNPOP), op(PUSH_HELD, 8), op(NOTIFY), op(SET_NOTIFY, 1),
      op(POP_PUSH, 1), op(NOTIFY), op(SET_NOTIFY, 0))
s.write('indirect-event-idx')

s = Seed(3, F_TWO_REGIONS, split=0x880)
s.desc(0, GPA + BUF, 0x100, WRITE)
s.desc(1, GPA + BUF + 0x40, 0x80, NEXT, 0)
s.avail(0)
s.avail(1)
s.ops(op(DRAIN, 4), op(NOTIFY))
s.write('two-regions-span')

s = Seed(3, F_TWO_REGIONS | F_HOLE, split=0x880, gap=0x1000)
s.desc(0, GPA + BUF, 0x100, WRITE)
s.avail(0)
s.ops(op(POP_PUSH), op(POP_PUSH))
s.write('two-regions-hole')

s = Seed(2, F_EVENT_IDX)
for i in range(4):
    s.desc(i, GPA + BUF + 0x10 * i, 0x10, WRITE if i & 1 else 0)
    s.avail(3 - i)
s.ops(op(DRAIN), op(NOTIFY), op(DRIVER_KICK, 4), op(DRAIN), op(NOTIFY), op(DRIVER_KICK, 4),
      op(DRAIN), op(SET_NOTIFY, 1), op(NOTIFY))
s.write('ring-cycles')

s = Seed(3)
s.desc(0, GPA + BUF, 1, NEXT, 1)
s.desc(1, GPA + BUF, 1, NEXT, 0)
s.avail(0)
s.ops(op(POP_PUSH), op(POP_PUSH), op(PUSH_HELD, 1))
s.write('loop')

# The descriptor table against the end of region 0 (0x800..0x880), the
# indirect table against the end of region 1, so reads past either are caught.
s = Seed(3, F_TWO_REGIONS | F_DESC_AT_END | F_INDIRECT, split=0x880)
s.ram += bytes(RAM - len(s.ram))
s.desc(0, GPA + 0x100, 8, NEXT, 1, 0x800)
s.desc(1, GPA + 0x200, 8, NEXT | WRITE, 7, 0x800)
s.desc(7, GPA + 0x300, 8, WRITE, 0, 0x800)
s.desc(3, GPA + RAM - 0x20, 0x20, INDIRECT, 0, 0x800)
s.desc(0, GPA + 0x100, 4, NEXT, 1, RAM - 0x20)
s.desc(1, GPA + 0x100, 4, WRITE, 0, RAM - 0x20)
s.avail(0)
s.avail(3)
s.ops(op(POP_PUSH), op(POP_PUSH), op(NOTIFY))
s.write('tables-at-region-ends')
