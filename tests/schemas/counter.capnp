# A user-defined interface for the Manager tests: registered on the server as a type,
# and published by a client.
@0xf4733eb491741a4c;

interface Counter {
  increment @0 (by :Int64) -> (value :Int64);
  value @1 () -> (value :Int64);
}
