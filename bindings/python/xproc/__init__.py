"""xproc: ``multiprocessing``'s Queue, Pipe and Manager whose messages are Cap'n Proto.

Replace ``from multiprocessing import Queue, Pipe, Manager`` with
``from xproc import Queue, Pipe, Manager`` and keep the program: processes still come
from ``multiprocessing.Process`` (fork or spawn), the exceptions are the standard
library's (``queue.Empty``, ``queue.Full``, ``EOFError``,
``multiprocessing.AuthenticationError`` ...), and every message becomes readable by C++,
Rust and any other Cap'n Proto language.
"""

from multiprocessing import AuthenticationError, BufferTooShort

from . import connection, reduction
from ._xproc import DecodeError, MessageTooLarge, Struct, __version__, decode, encode, register_schema
from .connection import Connection, Pipe
from .managers import Manager, ProxyRef, SyncManager, connect
from .queues import JoinableQueue, Queue, SimpleQueue

__all__ = [
    "AuthenticationError",
    "BufferTooShort",
    "Connection",
    "DecodeError",
    "JoinableQueue",
    "Manager",
    "MessageTooLarge",
    "Pipe",
    "ProxyRef",
    "Queue",
    "SimpleQueue",
    "Struct",
    "SyncManager",
    "connect",
    "connection",
    "decode",
    "encode",
    "reduction",
    "register_schema",
]
