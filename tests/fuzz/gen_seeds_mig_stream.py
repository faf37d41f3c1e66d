#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Writes the seed inputs of fuzz_mig_stream into tests/fuzz/corpus/mig_stream/.

The layout is described at the top of fuzz_mig_stream.c: a mode byte (bit 0:
the target reseals the crcs; bit 1: through a pipe), then a migration stream
as vmm/base/mig_stream.h lays it out. The seeds here are valid streams with
correct crcs, so they read to END in every mode. Run it again after changing
that layout.
"""
import os
import struct

MAGIC, VERSION, F_LIVE = b'VMMSTATE', 1, 1
SECTION_MAGIC, CHUNKED = 0x54434553, 1
CONFIG, RAM, VCPU, VM_ARCH, SERIAL, DEVICE, BACKEND, END = 1, 2, 3, 4, 5, 6, 7, 0xffff
RESEAL, PIPE = 1, 2


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b'123456789') == 0xE3069283


def header(flags=F_LIVE, arch=b'x86_64', version=VERSION):
    h = MAGIC + struct.pack('<II', version, flags) + arch.ljust(16, b'\0')
    return h + struct.pack('<I', crc32c(h))


def sec_header(kind, instance=0, version=1, length=0, flags=0):
    h = struct.pack('<IHHIIQ', SECTION_MAGIC, kind, flags, instance, version, length)
    return h + struct.pack('<I', crc32c(h))


def plain(kind, body, instance=0, version=1):
    return sec_header(kind, instance, version, len(body)) + body + struct.pack('<I', crc32c(body))


def chunked(kind, chunks, instance=0, version=1):
    out, crc = sec_header(kind, instance, version, 0, CHUNKED), 0
    for c in chunks:
        out += struct.pack('>I', len(c)) + c
        crc = crc32c(c, crc)
    return out + struct.pack('>I', 0) + struct.pack('<I', crc)


def end():
    return sec_header(END)


def pattern(n, seed):
    return bytes((i * 131 + seed * 17 + (i >> 7)) & 0xFF for i in range(n))


SEEDS = {
    'minimal': header() + end(),
    'snapshot-every-kind': header(0) + plain(CONFIG, b'{"cpus":2,"memory":536870912}')
    + plain(VCPU, pattern(200, 1)) + plain(VCPU, pattern(200, 2), instance=2)
    + plain(VM_ARCH, pattern(120, 3)) + plain(SERIAL, pattern(12, 4))
    + plain(DEVICE, pattern(90, 5), instance=4) + chunked(BACKEND, [pattern(33, 6), pattern(700, 7)],
                                                          instance=4)
    + plain(RAM, pattern(3000, 8)) + end(),
    'ram-pieces': header() + plain(RAM, pattern(9000, 9), version=3) + end(),
    'chunked-many': header() + chunked(BACKEND, [pattern(n, n) for n in (1, 2, 500, 4096, 1000)],
                                       instance=2) + end(),
    'chunked-empty': header() + chunked(BACKEND, []) + plain(DEVICE, b'') + end(),
    'skipped': header() + plain(DEVICE, pattern(400, 10), instance=1)
    + chunked(BACKEND, [pattern(300, 11)] * 3, instance=3) + plain(RAM, pattern(500, 12), instance=5)
    + plain(SERIAL, pattern(8, 13)) + end(),
    'trailing-after-end': header() + plain(CONFIG, b'x') + end() + b'garbage after the end',
}

d = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'mig_stream')
os.makedirs(d, exist_ok=True)
for name, stream in SEEDS.items():
    for mode, suffix in ((0, ''), (RESEAL | PIPE, '-pipe')):
        if suffix and name not in ('snapshot-every-kind', 'chunked-many'):
            continue
        assert len(stream) + 1 <= 16416, name
        with open(os.path.join(d, name + suffix), 'wb') as f:
            f.write(bytes([mode]) + stream)

# A stream whose crcs are all zero: valid only once the target reseals it.
raw = bytearray(SEEDS['snapshot-every-kind'])
with open(os.path.join(d, 'unsealed'), 'wb') as f:
    f.write(bytes([RESEAL]) + bytes(raw[:32]) + b'\0\0\0\0' + bytes(raw[36:]))
