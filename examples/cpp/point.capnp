# The message type of the seed Queue example.
@0xe8aace3869025dd2;

struct Point {
  x @0 :Int64;
  # Which process sent it.

  y @1 :Int64;
  # Free for the user.

  name @2 :Text;
  # The sentence the process puts.
}
