"""Logs in to an xproc Manager with pycapnp alone (no xproc code in this process), reads
the dict a C++ process wrote, writes into it, and checks that a wrong authkey is refused.

usage: pycapnp_manager_client.py SCHEMA_DIR SOCKET_PATH AUTHKEY_HEX DICT_NAME
Prints what it read, as Python prints it; exits non-zero on any mismatch.
"""
import asyncio
import hashlib
import hmac
import sys

import capnp
from value_to_python import to_python

capnp.remove_import_hook()
schema_dir, socket_path, authkey_hex, dict_name = sys.argv[1:5]
manager_capnp = capnp.load(schema_dir + "/xproc/manager.capnp", imports=[schema_dir, "/usr/include"])


async def log_in(authkey):
    stream = await capnp.AsyncIoStream.create_unix_connection(socket_path)
    client = capnp.TwoPartyClient(stream)
    gate = client.bootstrap().cast_as(manager_capnp.Gate)
    nonce = (await gate.challenge()).nonce
    digest = hmac.new(authkey, nonce, hashlib.sha256).digest()
    return client, (await gate.login(digest)).manager


async def main():
    authkey = bytes.fromhex(authkey_hex)
    try:
        await log_in(b"not the key")
        sys.exit("a wrong authkey logged in")
    except capnp.KjException as error:
        if "AuthenticationError" not in str(error):
            sys.exit("unexpected error for a wrong key: " + str(error))

    client, manager = await log_in(authkey)
    shared = (await manager.dict(registeredName=dict_name)).dict
    snapshot = to_python((await shared.copy()).dict)
    print(repr(snapshot))
    await shared.setItem(key={"text": "from"}, value={"text": "python"})
    counter = (await shared.increment(key={"text": "count"}, delta={"int64": 5})).value
    if counter.int64 != 5 + snapshot.get("count", 0):
        sys.exit("increment returned %r" % counter.int64)
    try:
        await shared.getItem(key={"text": "missing"})
        sys.exit("no KeyError for a missing key")
    except capnp.KjException as error:
        if "KeyError: 'missing'" not in str(error):
            sys.exit("unexpected error for a missing key: " + str(error))
    print((await shared.repr()).text)


asyncio.run(capnp.run(main()))
