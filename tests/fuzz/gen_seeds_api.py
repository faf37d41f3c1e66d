#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Writes the seed inputs of fuzz_api into tests/fuzz/corpus/api/.

The layout is described at the top of fuzz_api.c: a method byte (index into
METHODS; 6 means "the method is the text up to the first space"), a byte
choosing the fake VM's answer (index into OP_RESULTS), the path up to '\\n',
then the body. Run it again after changing that layout.
"""
import os

GET, PUT, HEAD, POST, DELETE, PATCH, RAW = range(7)
OK, EALREADY, ESHUTDOWN, EAGAIN, ETIMEDOUT, EIO, ENOMEM = range(7)
EBUSY, EINVAL, EOPNOTSUPP, ECONNREFUSED, ENOENT, EEXIST, EHOSTUNREACH = range(8, 15)
NO_MIGRATION = 16   # or-ed into the answer byte: a VMM without migration ops (501)

SEEDS = {
    'ping': (GET, OK, '/api/v1/vmm.ping', None),
    'info': (GET, OK, '/api/v1/vm.info', None),
    'info-head': (HEAD, OK, '/api/v1/vm.info', None),
    'info-rebooting': (GET, EAGAIN, '/api/v1/vm.info', None),
    'pause': (PUT, OK, '/api/v1/vm.pause', None),
    'pause-empty-object': (PUT, OK, '/api/v1/vm.pause', '{}'),
    'pause-already': (PUT, EALREADY, '/api/v1/vm.pause', None),
    'pause-timeout': (PUT, ETIMEDOUT, '/api/v1/vm.pause', None),
    'resume': (PUT, OK, '/api/v1/vm.resume', ''),
    'resume-stopping': (PUT, ESHUTDOWN, '/api/v1/vm.resume', None),
    'resume-eio': (PUT, EIO, '/api/v1/vm.resume', None),
    'shutdown': (PUT, OK, '/api/v1/vm.shutdown', None),
    'unknown-field': (PUT, OK, '/api/v1/vm.shutdown', '{"force": true, "x": [1, {"y": null}]}'),
    'duplicate': (PUT, OK, '/api/v1/vm.pause', '{"a": 1, "a": 2}'),
    'not-object': (PUT, OK, '/api/v1/vm.pause', '[1, 2.5e300, "\\u00e9", false]'),
    'malformed': (PUT, OK, '/api/v1/vm.pause', '{"a": "\\ud800'),
    'nested': (PUT, OK, '/api/v1/vm.resume', '[' * 300 + ']' * 300),
    'wrong-method': (POST, OK, '/api/v1/vm.pause', None),
    'delete': (DELETE, OK, '/api/v1/vm.info', None),
    'unknown-path': (GET, OK, '/api/v1/vm.teleport', None),
    'raw-method': (RAW, OK, 'OPTIONS /api/v1/vm.info', None),
    'raw-long-method': (RAW, OK, 'X' * 40 + ' /api/v1/vm.pause', '{}'),
    'migrate': (PUT, OK, '/api/v1/vm.migrate',
                '{"to": "tcp:10.0.0.2:4444", "max_downtime_ms": 300, "bandwidth": 0}'),
    'migrate-verify': (PUT, OK, '/api/v1/vm.migrate', '{"to": "tcp:h:1", "verify": true}'),
    'migrate-verify-bad': (PUT, OK, '/api/v1/vm.migrate', '{"to": "tcp:h:1", "verify": 1}'),
    'migrate-busy': (PUT, EBUSY, '/api/v1/vm.migrate', '{"to": "tcp:h:1"}'),
    'migrate-bad-to': (PUT, EINVAL, '/api/v1/vm.migrate', '{"to": "udp:h"}'),
    'migrate-unmovable': (PUT, EOPNOTSUPP, '/api/v1/vm.migrate', '{"to": "tcp:h:1"}'),
    'migrate-refused': (PUT, ECONNREFUSED, '/api/v1/vm.migrate', '{"to": "tcp:h:1"}'),
    'migrate-no-to': (PUT, OK, '/api/v1/vm.migrate', '{"max_downtime_ms": -1}'),
    'migration': (GET, OK, '/api/v1/vm.migration', None),
    'migration-none': (GET, ENOENT, '/api/v1/vm.migration', None),
    'migrate-finish': (PUT, OK, '/api/v1/vm.migrate-finish', None),
    'migrate-cancel-none': (PUT, ENOENT, '/api/v1/vm.migrate-cancel', '{}'),
    'migrate-cancel-no-ops': (PUT, NO_MIGRATION, '/api/v1/vm.migrate-cancel', None),
    'snapshot': (PUT, OK, '/api/v1/vm.snapshot', '{"to": "/var/lib/vm/snap"}'),
    'snapshot-exists': (PUT, EEXIST, '/api/v1/vm.snapshot', '{"to": "/tmp/x"}'),
    'receive': (PUT, OK, '/api/v1/vm.receive-migration', '{"from": "tcp:0.0.0.0:4444"}'),
    'receive-not-waiting': (PUT, EALREADY, '/api/v1/vm.receive-migration', '{"from": "x"}'),
}

REPLIES = {
    'reply-204': b'HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n',
    'reply-409': b'HTTP/1.1 409 Conflict\r\nContent-Length: 13\r\n\r\n{"error":"e"}',
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'api')
    os.makedirs(out, exist_ok=True)
    for name, (method, result, path, body) in SEEDS.items():
        data = bytes([method, result]) + path.encode()
        if body is not None:
            data += b'\n' + body.encode()
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
    for name, data in REPLIES.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


main()
