// xproc::core in one include: queues, pipes, connections, the listener, values, messages,
// processes, wait(). It needs no event loop; the Manager (xproc::manager, on kj-async) has its
// own header, <xproc/manager.h>, and so have the queues' promises,
// <xproc/queue_promises.h>. (The C ABI is <xproc.h>.)
#pragma once
#include "xproc/array.h"
#include "xproc/byte_connection.h"
#include "xproc/byte_queue.h"
#include "xproc/connection.h"
#include "xproc/errors.h"
#include "xproc/listener.h"
#include "xproc/message.h"
#include "xproc/process.h"
#include "xproc/queue.h"
#include "xproc/queue_waiter.h"
#include "xproc/value.h"
#include "xproc/wait.h"
