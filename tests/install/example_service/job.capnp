@0xc4b1d9a3e2f70a51;
# A job whose payload is any xproc Value: the import works from an installed xproc.
using Value = import "/xproc/value.capnp".Value;

struct Job {
  id @0 :UInt32;
  payload @1 :Value;
}
