"""A standard-library Python client of the C++ xproc Listener (examples/cross/listener.cpp).

No xproc code here: multiprocessing.connection speaks the same framing and handshake.
usage: client.py HOST:PORT
"""
import sys
from multiprocessing.connection import Client

host, _, port = sys.argv[1].rpartition(":")
with Client((host, int(port)), authkey=b"xproc demo key") as conn:
    for text in ("Hi I'm a Python process", "and I only use the standard library"):
        conn.send_bytes(text.encode())
        print("Python client got:", conn.recv_bytes().decode())
    conn.send_bytes(b"bye")
