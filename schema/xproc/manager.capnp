# The Manager: multiprocessing's Manager() as Cap'n Proto RPC interfaces. A server holds
# shared objects (dict, list, namespace, value, array, queues, locks, events, conditions,
# barriers); clients in any language reach them through capabilities.
#
# Connecting: open a two-party RPC connection (unix socket or TCP); the bootstrap
# capability is a Gate. Call challenge(), send HMAC-SHA256(authkey, nonce) to login(), and
# use the Manager it returns. Nothing else is reachable before login.
#
# Errors: a failed call raises a Cap'n Proto exception whose description starts with the
# Python exception's name, a colon and a space, then the message — "KeyError: 'a'",
# "IndexError: list index out of range", "Empty: ", "BrokenBarrierError: ". Clients map
# that name back to their language's exception (see docs/protocol.md).
#
# Blocking calls (acquire, get, wait, join) take `timeout` in seconds; a negative timeout
# waits forever.
#
# Conventions clients rely on to call any method from this file alone (xproc's C++ and
# Python clients build every request from it, src/xproc/rpc/dynamic_call.h): `owner` is
# the calling thread's tag; a parameter `x` with a Bool `hasX` beside it is optional and
# `hasX` says whether it was given; each Kind's factory is the Manager method of the same
# ordinal, answering the object's capability first and its id second. xproc's clients
# send -1 for "no timeout" and refuse a negative one themselves (ValueError). They never block the server: other calls are served meanwhile. A client
# whose connection drops gives back what it held: its locks and rlocks are released, its
# semaphore acquisitions returned, its waits cancelled.
@0xd2a0f61c3b8e4a57;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("xproc::schema");

using import "value.capnp".Value;

interface Gate {
  # The bootstrap capability: proves the client knows the authkey.

  challenge @0 () -> (nonce :Data);
  # A fresh random nonce for this connection (32 bytes).

  login @1 (digest :Data) -> (manager :Manager, instance :UInt64);
  # digest = HMAC-SHA256(key = authkey, message = nonce). AuthenticationError on a wrong
  # digest or without a challenge; the connection is closed after a failed login.
  # instance: this server's random instance number, which Value.Proxy carries.
}

enum Kind {
  dict @0;
  list @1;
  namespace @2;
  value @3;
  array @4;
  queue @5;
  joinableQueue @6;
  lock @7;
  rlock @8;
  semaphore @9;
  boundedSemaphore @10;
  event @11;
  condition @12;
  barrier @13;
  user @14;
  # An object of a user's own interface (see Manager.create and Manager.publish).
}

interface Manager {
  # Every factory takes a `registeredName` (not `name`, which pycapnp's request methods
  # take for themselves): empty makes a new anonymous object; otherwise the object
  # registered under it is returned, made (from the other arguments) if there is none
  # yet — so unrelated processes that agree on a name share one object. ValueError if the
  # name holds an object of another kind. Every object also has a numeric id, by which a
  # process that inherited a proxy reaches it again over its own connection.

  dict @0 (registeredName :Text, initial :Value) -> (dict :Dict, id :UInt64);
  # initial: a map, or null for an empty dict.
  list @1 (registeredName :Text, initial :Value) -> (list :SharedList, id :UInt64);
  # initial: a list, or null for an empty list.
  namespace @2 (registeredName :Text) -> (namespace :Namespace, id :UInt64);
  value @3 (registeredName :Text, typecode :Text, initial :Value) -> (value :ValueCell, id :UInt64);
  array @4 (registeredName :Text, typecode :Text, initial :List(Value)) -> (array :Array, id :UInt64);
  # typecode as Python's array module: b B h H i I l L q Q (ints in range), f d (floats),
  # u (one-character strings).
  queue @5 (registeredName :Text, maxsize :Int64) -> (queue :Queue, id :UInt64);
  # maxsize <= 0: unbounded.
  joinableQueue @6 (registeredName :Text, maxsize :Int64) -> (queue :JoinableQueue, id :UInt64);
  lock @7 (registeredName :Text) -> (lock :Lock, id :UInt64);
  rlock @8 (registeredName :Text) -> (lock :Lock, id :UInt64);
  semaphore @9 (registeredName :Text, value :Int64) -> (semaphore :Semaphore, id :UInt64);
  boundedSemaphore @10 (registeredName :Text, value :Int64) -> (semaphore :Semaphore, id :UInt64);
  event @11 (registeredName :Text) -> (event :Event, id :UInt64);
  condition @12 (registeredName :Text, lock :UInt64) -> (condition :Condition, id :UInt64);
  # lock: the id of a lock or rlock of this manager to wait with; 0 makes a fresh rlock.
  barrier @13 (registeredName :Text, parties :UInt32, timeout :Float64) -> (barrier :Barrier, id :UInt64);
  # timeout: default for wait(); negative for none.

  create @14 (registeredName :Text, typeName :Text, args :List(Value), kwargs :List(Value.Entry))
      -> (object :Capability, id :UInt64, interfaceId :UInt64);
  # An object of a type the server registered (BaseManager.register's analogue): a new one
  # each call when `registeredName` is empty. KeyError for an unknown type name. `args`
  # and `kwargs` (text keys) go to the type's constructor; a type that takes none refuses
  # them with TypeError. A type registered from Python answers the Dynamic interface.
  publish @15 (registeredName :Text, object :Capability, interfaceId :UInt64) -> (id :UInt64);
  # Registers a capability the client implements itself under `registeredName` (replacing nothing:
  # ValueError if taken); calls from other clients are forwarded to it while it lives.

  lookup @16 (registeredName :Text) -> (object :Capability, kind :Kind, id :UInt64, interfaceId :UInt64);
  # KeyError when nothing is registered under `registeredName`.
  object @17 (id :UInt64) -> (object :Capability, kind :Kind, interfaceId :UInt64);
  # KeyError once the object is gone: anonymous objects live while some connection holds
  # them; named objects until unregistered.
  names @18 () -> (names :List(Text));
  unregister @19 (registeredName :Text);
  # KeyError when the name is not registered. The object lives on while held.

  shutdown @20 ();
  # Stops the server: every connection is closed and the process exits.
}

interface Object {
  # What every shared object answers.
  repr @0 () -> (text :Text);
  # Python's repr of the object (a proxy prints this).

  batch @1 (calls :List(BatchedCall)) -> (returns :List(BatchedReturn));
  # Several calls of this object's methods in one message, run in order, each answered on
  # its own: returns[i] is calls[i]'s results or its failure. A call fails alone; the calls
  # after it still run. Only methods that answer at once travel so: one with a `timeout`
  # parameter (it may wait) fails with TypeError, as does batch itself. xproc's
  # asynchronous clients send the calls made to one object in one turn of their event loop
  # this way (the server then pays one RPC for all of them).

  struct BatchedCall {
    interfaceId @0 :UInt64;
    # The interface that declares the method (a base's id for an inherited method).
    methodId @1 :UInt16;
    params @2 :AnyPointer;
    # The method's parameter struct.
  }

  struct BatchedReturn {
    union {
      results @0 :AnyPointer;
      # The method's result struct.
      failure @1 :Text;
      # What a failed call raises, as a failed RPC's reason: "KeyError: 'a'".
    }
  }
}

interface Dynamic {
  # An object whose methods are named when called: an object of a type registered with
  # Python's BaseManager.register, living in the server's Python interpreter. Its
  # arguments and results are Values; errors are named as every other call's ("KeyError:
  # 'a'"; an exception that is not one of Python's built-in ones under its module-qualified
  # name, "mymodule.QuotaExceeded: ..."). A call may wait (the method runs on a thread of
  # the server's own, as multiprocessing's servers do); other calls are served meanwhile.

  call @0 (method :Text, args :List(Value), kwargs :List(Value.Entry)) -> (result :Value, sharedAs :Text);
  # The method's result. AttributeError for a method the type does not expose; keys of
  # `kwargs` are text. A method registered to return a shared object (BaseManager's
  # method_to_typeid) answers `sharedAs`, the type name of that object, and in `result` a
  # claim (Data): Manager.create(typeName = sharedAs, kwargs = {"#claim": claim}) makes it
  # the caller's, once. An unclaimed result is dropped after a minute.

  exposed @1 () -> (methods :List(Text));
  # The names call() accepts (BaseManager.register's `exposed`, by default the object's
  # public methods).
}

struct Slice {
  # Python's slice(start, stop, step); a missing bound is None.
  start @0 :Int64;
  stop @1 :Int64;
  step @2 :Int64 = 1;
  hasStart @3 :Bool;
  hasStop @4 :Bool;
}

interface Dict extends(Object) {
  getItem @0 (key :Value) -> (value :Value);
  # d[key]; KeyError when missing.
  get @1 (key :Value, default :Value) -> (value :Value);
  setItem @2 (key :Value, value :Value);
  delItem @3 (key :Value);
  # KeyError when missing.
  contains @4 (key :Value) -> (result :Bool);
  len @5 () -> (length :UInt64);
  keys @6 () -> (keys :List(Value));
  values @7 () -> (values :List(Value));
  items @8 () -> (items :List(Value.Entry));
  update @9 (items :List(Value.Entry));
  pop @10 (key :Value, default :Value, hasDefault :Bool) -> (value :Value);
  popitem @11 () -> (key :Value, value :Value);
  # The last inserted item; KeyError when empty.
  setdefault @12 (key :Value, default :Value) -> (value :Value);
  clear @13 ();
  copy @14 () -> (dict :Value);
  # A snapshot as a map Value.

  # Beyond Python: atomic compound operations.
  increment @15 (key :Value, delta :Value) -> (value :Value);
  # d[key] = d.get(key, 0) + delta, atomically; returns the new value. TypeError unless
  # both are numbers.
  compareAndSet @16 (key :Value, expected :Value, expectMissing :Bool, value :Value)
      -> (swapped :Bool, current :Value, present :Bool);
  # Sets d[key] = value if d[key] == expected (or if key is missing, when expectMissing).
  # Returns whether it did, and what is there now.
  getMany @17 (keys :List(Value)) -> (values :List(Value), present :List(Bool));
  # One round trip for many reads; a missing key gives null and present = false.
  setMany @18 (items :List(Value.Entry));
  # update() by another name: one round trip for many writes.
}

interface SharedList extends(Object) {
  # A Python list (named so because List is Cap'n Proto's own list type).
  getItem @0 (index :Int64) -> (value :Value);
  # l[i], negative from the end; IndexError when out of range.
  setItem @1 (index :Int64, value :Value);
  delItem @2 (index :Int64);
  getSlice @3 (slice :Slice) -> (values :List(Value));
  setSlice @4 (slice :Slice, values :List(Value));
  # ValueError for an extended slice of another length.
  delSlice @5 (slice :Slice);
  append @6 (value :Value);
  extend @7 (values :List(Value));
  insert @8 (index :Int64, value :Value);
  pop @9 (index :Int64, hasIndex :Bool) -> (value :Value);
  # Without an index, the last item. IndexError when empty or out of range.
  remove @10 (value :Value);
  # ValueError when absent.
  index @11 (value :Value, start :Int64, stop :Int64, hasStop :Bool) -> (index :Int64);
  count @12 (value :Value) -> (count :UInt64);
  contains @13 (value :Value) -> (result :Bool);
  reverse @14 ();
  sort @15 (reverse :Bool);
  # Python's ordering: numbers with numbers, str with str, bytes with bytes, lists
  # lexicographically; TypeError for anything else.
  len @16 () -> (length :UInt64);
  copy @17 () -> (list :List(Value));
  multiply @18 (times :Int64);
  # l *= times.
}

interface Namespace extends(Object) {
  getAttr @0 (attribute :Text) -> (value :Value);
  # AttributeError when missing.
  setAttr @1 (attribute :Text, value :Value);
  delAttr @2 (attribute :Text);
  items @3 () -> (items :List(Value.Entry));
}

interface ValueCell extends(Object) {
  # manager.Value(typecode, value).
  get @0 () -> (value :Value);
  set @1 (value :Value);
  typecode @2 () -> (typecode :Text);
  increment @3 (delta :Value) -> (value :Value);
  # Atomic value += delta; returns the new value.
}

interface Array extends(Object) {
  # manager.Array(typecode, sequence): fixed length, items checked against the typecode.
  len @0 () -> (length :UInt64);
  getItem @1 (index :Int64) -> (value :Value);
  setItem @2 (index :Int64, value :Value);
  getSlice @3 (slice :Slice) -> (values :List(Value));
  setSlice @4 (slice :Slice, values :List(Value));
  # The slice's length may not change: ValueError.
  typecode @5 () -> (typecode :Text);
}

interface Queue extends(Object) {
  put @0 (value :Value, block :Bool = true, timeout :Float64 = -1);
  # Full when it stays full past the timeout (or at once without block).
  get @1 (block :Bool = true, timeout :Float64 = -1) -> (value :Value);
  # Empty when nothing comes in time.
  qsize @2 () -> (size :UInt64);
  empty @3 () -> (result :Bool);
  full @4 () -> (result :Bool);
}

interface JoinableQueue extends(Queue) {
  taskDone @0 ();
  # ValueError when called more times than items were put.
  join @1 (timeout :Float64 = -1) -> (done :Bool);
  # Blocks until every item put has been marked done; false on timeout.
}

interface Lock extends(Object) {
  # Lock and RLock. `owner` tells apart the threads of one client: an rlock is re-entrant
  # for the same (connection, owner); a lock ignores it. Releasing an rlock one does not
  # hold, or an unlocked lock, is a RuntimeError.
  acquire @0 (blocking :Bool = true, timeout :Float64 = -1, owner :UInt64) -> (acquired :Bool);
  release @1 (owner :UInt64);
  locked @2 () -> (result :Bool);
}

interface Semaphore extends(Object) {
  acquire @0 (blocking :Bool = true, timeout :Float64 = -1) -> (acquired :Bool);
  release @1 (n :UInt32 = 1);
  # A bounded semaphore released above its initial value: ValueError.
  value @2 () -> (value :Int64);
}

interface Event extends(Object) {
  set @0 ();
  clear @1 ();
  isSet @2 () -> (result :Bool);
  wait @3 (timeout :Float64 = -1) -> (result :Bool);
}

interface Condition extends(Object) {
  # A condition over a lock of the manager; acquire/release go to that lock.
  acquire @0 (blocking :Bool = true, timeout :Float64 = -1, owner :UInt64) -> (acquired :Bool);
  release @1 (owner :UInt64);
  wait @2 (timeout :Float64 = -1, owner :UInt64) -> (notified :Bool);
  # Releases the lock (fully, for an rlock), waits for a notify, reacquires it. RuntimeError
  # unless the caller holds the lock.
  notify @3 (n :UInt32 = 1, owner :UInt64);
  notifyAll @4 (owner :UInt64);
}

interface Barrier extends(Object) {
  wait @0 (timeout :Float64 = -1) -> (index :UInt32);
  # BrokenBarrierError when the barrier is or becomes broken (abort, a timeout, a waiter
  # whose connection drops).
  reset @1 ();
  abort @2 ();
  parties @3 () -> (parties :UInt32);
  nWaiting @4 () -> (waiting :UInt32);
  broken @5 () -> (result :Bool);
}
