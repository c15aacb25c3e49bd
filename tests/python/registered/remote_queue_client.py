# multiprocessing's documentation, "Using a remote manager": a client, with only the
# import changed (and the port and the action taken from the command line).
import sys

from xproc.managers import BaseManager
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
m = QueueManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'abracadabra')
m.connect()
queue = m.get_queue()
if sys.argv[2] == "put":
    queue.put('hello')
else:
    print(queue.get())
