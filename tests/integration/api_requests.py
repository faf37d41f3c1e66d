#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Bad and concurrent requests against a running vmm's control API (tests/integration/api.sh).

Usage: api_requests.py SOCKET
Prints one line per check, "NAME STATUS DETAIL": STATUS is the HTTP status seen (or a word
for what happened); api.sh compares them with what docs/api.md says. While it runs, one
client stays connected saying nothing and one stops in the middle of its headers: the others
must be served all the same. Nothing here may pause, resume or stop the VM.
"""
import json
import socket
import sys
import threading

SOCK = sys.argv[1]


def exchange(raw, timeout=30):
    """Sends raw bytes on a new connection, returns (status, body) of the reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(SOCK)
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before it was all sent (413): the reply is still there to read
    data = b''
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b'\r\n\r\n')
    parts = head.split(b' ', 2)
    if len(parts) < 2 or not parts[0].startswith(b'HTTP/1.'):
        return 'not-http', data[:80]
    return int(parts[1]), body


def request(method, path, body=b'', headers=''):
    raw = (f'{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n'
           f'Content-Length: {len(body)}\r\n{headers}\r\n').encode() + body
    return exchange(raw)


def error_of(body):
    """The reply's {"error": "..."} text, or a word saying it has none."""
    try:
        obj = json.loads(body)
    except ValueError:
        return 'no-json-body'
    if not isinstance(obj, dict) or not isinstance(obj.get('error'), str) or len(obj) != 1:
        return 'no-error-member'
    return 'error=' + obj['error'].replace(' ', '_')[:60]


def report(name, status, body):
    print(name, status, error_of(body) if isinstance(status, int) and status >= 400 else '-',
          flush=True)


def main():
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(SOCK)
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(SOCK)
    half.sendall(b'PUT /api/v1/vm.shutdown HTTP/1.1\r\nHost: x\r\nContent-Le')

    report('unknown-path', *request('GET', '/api/v1/vm.nothing'))
    report('wrong-method', *request('DELETE', '/api/v1/vm.pause'))
    report('get-on-put', *request('GET', '/api/v1/vm.shutdown'))
    report('malformed-json', *request('PUT', '/api/v1/vm.pause', b'{"a":'))
    report('not-an-object', *request('PUT', '/api/v1/vm.resume', b'[1,2]'))
    report('unknown-field', *request('PUT', '/api/v1/vm.shutdown', b'{"now":true}'))
    report('duplicate-key', *request('PUT', '/api/v1/vm.pause', b'{"a":1,"a":1}'))
    report('huge-body', *request('PUT', '/api/v1/vm.pause', b' ' * (1 << 20)))
    report('not-http', *exchange(b'\x16\x03\x01\x00\xa5garbage\r\n\r\n'))

    results = []
    lock = threading.Lock()

    def one():
        try:
            st, body = request('GET', '/api/v1/vm.info')
            ok = st == 200 and json.loads(body)['state'] == 'running'
        except (OSError, ValueError, KeyError):
            ok = False
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print('concurrent-info', sum(results), len(results), flush=True)

    # The half request never completes: the VM was not shut down by it.
    st, body = request('GET', '/api/v1/vm.info')
    print('still-running', st, json.loads(body).get('state') if st == 200 else '-', flush=True)
    silent.close()
    half.close()


main()
