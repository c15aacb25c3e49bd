"""CPython's own multiprocessing.connection.Client, standard library only.

usage: python_client.py ADDRESS AUTHKEY
Sends messages of several sizes, expects each back reversed, then sends b'bye'.
Exit codes: 0 ok, 3 authentication failure, 4 wrong reply.
"""
import sys

from addresses import parse_address
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client



address, authkey = parse_address(sys.argv[1]), sys.argv[2].encode()
try:
    conn = Client(address, authkey=authkey)
except AuthenticationError:
    sys.exit(3)
for size in (0, 1, 100, 16385, 70000, 1 << 20):
    message = bytes((i * 7 + size) % 256 for i in range(size))
    conn.send_bytes(message)
    if conn.recv_bytes() != message[::-1]:
        sys.exit(4)
conn.send_bytes(b"bye")
conn.close()
