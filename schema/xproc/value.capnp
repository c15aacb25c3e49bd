# Value: the "any object" of xproc. What untyped queues and connections carry and what
# Manager containers hold, readable by every Cap'n Proto implementation. It mirrors the
# Python objects multiprocessing users pass around: None, bool, int, float, str, bytes,
# list, tuple, dict (keys of any kind, insertion-ordered), proxies of Manager objects,
# n-dimensional arrays of numbers (numpy's ndarray), plus a typed struct for messages of a
# user's own schema.
@0xb7abd7d3483534c4;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("xproc::schema");

struct Value {
  union {
    null @0 :Void;
    # Python None.

    bool @1 :Bool;
    # Python True / False.

    int64 @2 :Int64;
    # Python int within the signed 64-bit range.

    float64 @3 :Float64;
    # Python float (IEEE 754 double; NaN and infinities allowed).

    text @4 :Text;
    # Python str, UTF-8.

    data @5 :Data;
    # Python bytes.

    list @6 :List(Value);
    # Python list.

    map @7 :List(Entry);
    # Python dict: entries in insertion order; keys are unique under Python's equality
    # (1, 1.0 and True are the same key).

    struct @8 :TypedStruct;
    # A message of a user's schema, tagged with that schema's id.

    tuple @9 :List(Value);
    # Python tuple: a list that Python rebuilds as a tuple. A language without tuples may
    # read it as a list; a tuple never equals a list, as in Python. (Readers older than
    # this member refuse it as an unknown kind of Value.)

    proxy @10 :Proxy;
    # A Manager's shared object, as a proxy stored in a container or sent in a message
    # names it (see Proxy).

    array @11 :Array;
    # An n-dimensional array of numbers: a numpy ndarray, a buffer (bytearray, memoryview,
    # array.array), a C++ span or a Rust slice with a shape (see Array).

    bigInt @12 :Data;
    # Python int outside the signed 64-bit range: its two's-complement bytes,
    # little-endian, 9 to 4096 of them (readers refuse other sizes). A reader that holds
    # 64-bit ints only refuses it (xproc's C++ Value: DecodeError); xproc's Python reads
    # and writes it.
  }

  struct Entry {
    key @0 :Value;
    # The key; any kind of Value, as Python allows any hashable object.

    value @1 :Value;
    # The value stored under the key.
  }

  struct Proxy {
    # Names one object of one Manager server. A client that reads it reaches the object
    # over its own connection to that server (Manager.object(id)); a server that stores it
    # in a container keeps the object alive while the container holds it. It carries no
    # address: a process resolves it only against the servers it already uses, so a
    # message cannot make it connect (and answer a login challenge) anywhere else.

    manager @0 :UInt64;
    # The server's instance, a random number it chose when it started (returned by
    # Gate.login). A server refuses a Proxy of another instance.

    id @1 :UInt64;
    # The object's id on that server (as the factories return it).
  }

  struct Array {
    # An n-dimensional array, laid out as numpy's C-contiguous arrays are on a
    # little-endian machine: elements in row-major order (the last index varies fastest),
    # each little-endian, packed without padding. Its elements are product(shape) of
    # dtype's size, held in `data`, or, for arrays of 512 MiB or more (past Cap'n Proto's
    # largest Data), in consecutive `pieces` with `data` empty. Cap'n Proto starts every
    # Data on a word boundary of the message, so in a message at an 8-byte-aligned address
    # the elements are aligned for their type. Readers refuse an unknown dtype, a byte
    # count other than product(shape) times the dtype's size, both `data` and `pieces`, a
    # piece that is not a multiple of the dtype's size, more than 64 dimensions and a bool
    # that is neither 0 nor 1.

    dtype @0 :DType;
    # The element type.

    shape @1 :List(UInt64);
    # The length along each dimension; empty for a 0-dimensional array (one element).

    data @2 :Data;
    # The elements.

    pieces @3 :List(Data);
    # The elements of an array of 512 MiB or more, cut into consecutive pieces, each a
    # multiple of the dtype's size (writers use 256 MiB pieces); `data` is then empty.

    enum DType {
      # numpy's names; sizes in bytes in brackets.
      bool @0;        # [1] 0 = false, 1 = true
      int8 @1;        # [1]
      int16 @2;       # [2]
      int32 @3;       # [4]
      int64 @4;       # [8]
      uint8 @5;       # [1]
      uint16 @6;      # [2]
      uint32 @7;      # [4]
      uint64 @8;      # [8]
      float16 @9;     # [2] IEEE 754 binary16
      float32 @10;    # [4] IEEE 754 binary32
      float64 @11;    # [8] IEEE 754 binary64
      complex64 @12;  # [8] real then imaginary, each a float32
      complex128 @13; # [16] real then imaginary, each a float64
    }
  }

  struct TypedStruct {
    schemaId @0 :UInt64;
    # The 64-bit Cap'n Proto type id of the struct's schema (`capnp id` / typeId<T>()).

    value @1 :AnyPointer;
    # The struct itself.
  }
}

struct Handle {
  # Descriptors that travel beside a message, as multiprocessing pickles a Connection or a
  # socket into a queue or a pipe. It travels as Value.struct tagged with this struct's
  # schema id. The sending process serves each descriptor once on a unix socket (Python:
  # multiprocessing's resource sharer, behind the HMAC handshake with the authkey both
  # processes inherited); the receiver fetches them after checking that the sharer runs as
  # its own user (or root), and rebuilds the object.

  sharer @0 :Text;
  # The unix socket address serving the descriptors (a path, or "\0" and an abstract name).

  keys @1 :List(UInt64);
  # One key per descriptor, each good for one fetch.

  kind @2 :Text;
  # What the descriptors make: "connection" (a socket Connection: one descriptor),
  # "pipe_end" (a shared-memory Pipe end: its socket, two rings, control block and two
  # eventfds), "socket" (a socket object).

  details @3 :Value;
  # What else rebuilding it takes: (readable, writable, schema id) for a connection;
  # (side, readable, writable, schema id) for a pipe end, the schema id as hexadecimal
  # text ("0x..."); (family, type, proto) for a socket.
}
