"""A JetStream consumer that knows nothing of xproc: nats-py (asyncio, a durable pull
subscription) and pycapnp with the message's schema file, as a program in another
language or on another host would read what `xproc bridge out` publishes.

    python nats_py_consumer.py --servers URL[,URL] --stream S --subject SUBJ \
        --schema FILE.capnp:Type --count N

Prints one JSON object a message: its stream sequence, its Nats-Msg-Id, and its fields as
pycapnp decodes them. Exits 2 when a message's Xproc-Schema-Id is not the schema's id, 3
when fewer than N messages came within --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import capnp
import nats


async def consume(args) -> int:
    path, type_name = args.schema.rsplit(":", 1)
    struct = capnp.load(path)
    for part in type_name.split("."):
        struct = getattr(struct, part)
    expected = f"{struct.schema.node.id:#018x}"  # as xproc writes it: 0x + 16 hex digits

    connection = await nats.connect(servers=args.servers.split(","), connect_timeout=5)
    js = connection.jetstream()
    subscription = await js.pull_subscribe(args.subject, durable=args.durable, stream=args.stream)
    received = 0
    deadline = time.monotonic() + args.timeout
    try:
        while received < args.count and time.monotonic() < deadline:
            try:
                messages = await subscription.fetch(min(64, args.count - received), timeout=1)
            except nats.errors.TimeoutError:
                continue
            for message in messages:
                carried = (message.headers or {}).get("Xproc-Schema-Id")
                if carried != expected:
                    print(f"message {message.metadata.sequence.stream} carries schema id {carried}, "
                          f"expected {expected}", file=sys.stderr)
                    return 2
                with struct.from_bytes(message.data) as decoded:
                    fields = decoded.to_dict()
                print(json.dumps({"sequence": message.metadata.sequence.stream,
                                  "msg_id": message.headers.get("Nats-Msg-Id"),
                                  "fields": fields}), flush=True)
                await message.ack()
                received += 1
    finally:
        await connection.close()
    assert "xproc" not in sys.modules, "the consumer must not load xproc"
    return 0 if received == args.count else 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--durable", default="nats-py")
    parser.add_argument("--schema", required=True, help="FILE.capnp:Type")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60)
    return asyncio.run(consume(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
