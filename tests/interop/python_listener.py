"""CPython's own multiprocessing.connection.Listener, standard library only.

usage: python_listener.py ADDRESS AUTHKEY [SAVE_PATH]
Prints the address, accepts one client, echoes each message reversed until it receives
b'bye'; the first message is also saved to SAVE_PATH when given. Exit code 3 on an
authentication failure.
"""
import sys

from addresses import parse_address
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener



address, authkey = parse_address(sys.argv[1]), sys.argv[2].encode()
save = sys.argv[3] if len(sys.argv) > 3 else None
with Listener(address, authkey=authkey) as listener:
    shown = listener.address
    if isinstance(shown, tuple):
        shown = "%s:%d" % shown
    print(shown, flush=True)
    try:
        conn = listener.accept()
    except AuthenticationError:
        print("auth-failed", flush=True)
        sys.exit(3)
    first = True
    while True:
        data = conn.recv_bytes()
        if save and first:
            with open(save, "wb") as f:
                f.write(data)
        first = False
        if data == b"bye":
            break
        conn.send_bytes(data[::-1])
