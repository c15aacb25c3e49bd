// Everything of the C++ library in one include: <xproc/xproc.h>. (The C ABI is <xproc.h>.)
#pragma once
#include "xproc/byte_connection.h"
#include "xproc/byte_queue.h"
#include "xproc/connection.h"
#include "xproc/errors.h"
#include "xproc/listener.h"
#include "xproc/manager.h"
#include "xproc/message.h"
#include "xproc/process.h"
#include "xproc/queue.h"
#include "xproc/value.h"
