# The seed's Queue program. Only the import of Queue changed: the messages now travel
# through shared memory as Cap'n Proto (a C++ or Rust process could read them).
from multiprocessing import Process, current_process

from xproc import Queue


def f(q, i):
    name = current_process().name
    q.put(f"My Process_name is {name} and put the data to the id {i} queue")


if __name__ == "__main__":
    q = Queue(3)
    processes = [Process(target=f, args=(q, i)) for i in range(3)]
    for p in processes:
        p.start()
    for _ in processes:
        print(q.get())
    for p in processes:
        p.join()
