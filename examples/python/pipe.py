# The seed's Pipe program. Only the import of Pipe changed.
import os
from multiprocessing import Process

from xproc import Pipe


def f(conn):
    conn.send(f"Hi I'm your subprocess. My ID is {os.getpid()}")
    print(os.getpid(), "got:", conn.recv(), flush=True)


if __name__ == "__main__":
    parent_conn, child_conn = Pipe()
    for _ in range(2):
        p = Process(target=f, args=(child_conn,))
        p.start()
        print("parent got:", parent_conn.recv(), flush=True)
        parent_conn.send("Remember I'm your Master")
        p.join()
