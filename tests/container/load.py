"""What a program moved to xproc by one import does in a container (run by run.sh inside a
64 MiB /dev/shm and a 1024-descriptor limit): every step either works or fails at the call
with a clear error, never SIGBUS or EMFILE."""

from __future__ import annotations

import os
import resource
import xproc

MIB = 1 << 20


def named_queues() -> None:
    """100 named queues, each used, fit beside each other in 64 MiB."""
    names = [f"container-{os.getpid()}-{i}" for i in range(100)]
    queues = [xproc.Queue(name=name) for name in names]
    try:
        for i, q in enumerate(queues):
            q.put({"queue": i})
        assert [q.get(timeout=5) for q in queues] == [{"queue": i} for i in range(100)]
        # A message bigger than /dev/shm: a clear MemoryError at the put, the queue intact.
        try:
            queues[0].put(b"x" * (100 * MIB))
        except MemoryError:
            pass
        else:
            raise AssertionError("a 100 MiB message fitted in a 64 MiB /dev/shm")
        queues[0].put("after")
        assert queues[0].get(timeout=5) == "after"
    finally:
        for q in queues:
            q.close()
        for name in names:
            xproc.Queue.remove(name)
    print("100 named queues: ok")


def pipes() -> None:
    """400 Pipes alive at once under 1024 descriptors, each carrying a message both ways."""
    ends = [xproc.Pipe() for _ in range(400)]
    for i, (a, b) in enumerate(ends):
        a.send(i)
        b.send(-i)
    for i, (a, b) in enumerate(ends):
        assert b.recv() == i and a.recv() == -i
    shared = sum(a._engine.shared_memory for a, _ in ends)
    for a, b in ends:
        a.close()
        b.close()
    print(f"400 pipes: ok ({shared} over shared memory, the rest socket pairs)")


def large_messages() -> None:
    """100 MiB through an (anonymous) queue and a pipe, to another process."""
    payload = bytes(range(256)) * (100 * MIB // 256)
    q = xproc.Queue()
    parent, child = xproc.Pipe()
    pid = os.fork()
    if pid == 0:
        try:
            got = q.get(timeout=60)
            child.send_bytes(got)
            os._exit(0 if got == payload else 3)
        except BaseException:
            os._exit(4)
    q.put(payload)
    back = parent.recv_bytes()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and back == payload
    print("100 MiB through a queue and a pipe: ok")


if __name__ == "__main__":
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= 1024
    named_queues()
    pipes()
    large_messages()
