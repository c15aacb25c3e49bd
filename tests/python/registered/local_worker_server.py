# multiprocessing's documentation, "Using a remote manager": a local queue fed by a local
# worker, served to remote clients, with only the import changed (and the port taken from
# the command line, for the test).
import sys

from multiprocessing import Process, Queue
from xproc.managers import BaseManager
class Worker(Process):
    def __init__(self, q):
        self.q = q
        super().__init__()
    def run(self):
        self.q.put('local hello')

queue = Queue()
w = Worker(queue)
w.start()
class QueueManager(BaseManager): pass

QueueManager.register('get_queue', callable=lambda: queue)
m = QueueManager(address=('', int(sys.argv[1])), authkey=b'abracadabra')
s = m.get_server()
print("serving", flush=True)
s.serve_forever()
