# multiprocessing's documentation, "Using a remote manager": the server, with only the
# import changed (and the port taken from the command line, for the test).
import sys

from xproc.managers import BaseManager
from queue import Queue
queue = Queue()
class QueueManager(BaseManager): pass
QueueManager.register('get_queue', callable=lambda:queue)
m = QueueManager(address=('', int(sys.argv[1])), authkey=b'abracadabra')
s = m.get_server()
print("serving", flush=True)
s.serve_forever()
