/* xproc's C ABI: queues, connections and Manager dicts and lists for languages that are
 * neither C++ nor Python. Messages cross the boundary as bytes; for the Manager they are
 * xproc Value messages (schema/xproc/value.capnp), which the xproc_value_* helpers make
 * and read for the common kinds without a Cap'n Proto library.
 *
 * Conventions, for every function:
 *  - The return value is a status: XPROC_OK (0) or one XPROC_* code per error kind.
 *    xproc_strerror(code) names it; xproc_last_error_message() is this thread's message
 *    for the last failed call (valid until the thread's next xproc call).
 *  - Nothing is written to an out-parameter unless the call returns XPROC_OK.
 *  - Buffers the library returns (void** data / char** text) belong to the caller, who
 *    frees them with xproc_free().
 *  - Handles are freed by their *_close function, which never fails; a handle must not be
 *    used after it is closed, nor closed twice. Handles may be used from any thread, but
 *    one handle not from two threads at once.
 *  - Timeouts are in seconds: negative blocks until done, 0 does not block.
 */
#ifndef XPROC_XPROC_H
#define XPROC_XPROC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XPROC_API __attribute__((visibility("default")))

enum xproc_status {
  XPROC_OK = 0,
  XPROC_EMPTY = 1, /* a get found no message before the timeout */
  XPROC_FULL = 2,  /* a put found no room before the timeout */
  XPROC_EOF = 3,   /* the other end closed the connection */
  XPROC_TIMEOUT = 4,
  XPROC_VALUE_ERROR = 5, /* a bad argument (a bad name, a closed queue ...) */
  XPROC_KEY_ERROR = 6,
  XPROC_INDEX_ERROR = 7,
  XPROC_TYPE_ERROR = 8,
  XPROC_AUTHENTICATION_ERROR = 9,
  XPROC_BROKEN_PIPE = 10,
  XPROC_CONNECTION_ERROR = 11, /* the peer or server is gone, or nobody listens */
  XPROC_OS_ERROR = 12,         /* a system call failed (see the message) */
  XPROC_MESSAGE_TOO_LARGE = 13,
  XPROC_DECODE_ERROR = 14, /* bytes that are not a valid message of the expected type */
  XPROC_RUNTIME_ERROR = 15,
  XPROC_INVALID_ARGUMENT = 16, /* a NULL handle or out-parameter */
  XPROC_NO_MEMORY = 17,
  XPROC_UNKNOWN_ERROR = 18,
  XPROC_PERMISSION_ERROR = 19, /* not allowed, or a named segment not owned and protected as required */
  XPROC_BUFFER_TOO_SHORT = 20,
  XPROC_ATTRIBUTE_ERROR = 21, /* a Manager namespace has no such attribute */
  XPROC_BROKEN_BARRIER = 22   /* a Manager barrier was aborted, reset or timed out */
};

/* The name of a status code ("XPROC_EMPTY: ..."); a static string. */
XPROC_API const char* xproc_strerror(int code);
/* This thread's message for its last failed call ("" if none); valid until its next call. */
XPROC_API const char* xproc_last_error_message(void);
/* Frees a buffer the library returned. NULL is ignored. */
XPROC_API void xproc_free(void* buffer);
/* The version of the library this process runs, "MAJOR.MINOR.PATCH" (a static string),
 * which may differ from the header's when another libxproc_c.so is found at run time. */
XPROC_API const char* xproc_version(void);

/* ---- Queues (shared memory; multiprocessing.Queue) ----------------------------------- */
typedef struct xproc_queue xproc_queue;

/* A new queue: named (/dev/shm/xproc.<name>, any process may open it) or, with name NULL,
 * anonymous (inherited by fork()ed children). maxsize 0: unbounded; capacity_bytes: the
 * most the waiting messages may take, 0 for the default 1 GiB (memory is taken by use:
 * 256 KiB when idle). XPROC_VALUE_ERROR for a bad or taken name, XPROC_NO_MEMORY when
 * /dev/shm cannot hold it (or, at a put, the message). The queue carries raw bytes (schema id 0),
 * or, via xproc_queue_create_typed, the messages of one Cap'n Proto struct type. */
XPROC_API int xproc_queue_create(const char* name, size_t maxsize, size_t capacity_bytes, xproc_queue** out);
XPROC_API int xproc_queue_create_typed(const char* name, size_t maxsize, size_t capacity_bytes, uint64_t schema_id,
                                       xproc_queue** out);
/* Opens a named queue made by any process, in any language. XPROC_VALUE_ERROR when absent;
 * XPROC_PERMISSION_ERROR unless it is a regular file owned by this process's effective uid
 * that no other user may read or write (see xproc_queue_open_shared). */
XPROC_API int xproc_queue_open(const char* name, xproc_queue** out);
/* Named queues shared with other users on purpose (C++: xproc::Sharing). The creator gives the
 * segment the permission bits `mode` (e.g. 0660) and, unless group_gid is -1, that group; an
 * opener accepts a segment owned by owner_uid (-1: this process's effective uid) whose
 * permission bits stay within `mode`, and, unless group_gid is -1, whose group is group_gid
 * when it has group bits. XPROC_PERMISSION_ERROR otherwise. */
XPROC_API int xproc_queue_create_shared(const char* name, size_t maxsize, size_t capacity_bytes, uint64_t schema_id,
                                        unsigned mode, int64_t group_gid, xproc_queue** out);
XPROC_API int xproc_queue_open_shared(const char* name, unsigned mode, int64_t owner_uid, int64_t group_gid,
                                      xproc_queue** out);
/* The schema id the queue's creator recorded (0 for raw bytes). */
XPROC_API int xproc_queue_schema_id(const xproc_queue* queue, uint64_t* out);
/* Copies size bytes in. XPROC_FULL on timeout; XPROC_MESSAGE_TOO_LARGE over the queue's
 * largest message (half its capacity unless set lower). */
XPROC_API int xproc_queue_put(xproc_queue* queue, const void* data, size_t size, double timeout);
/* Removes the oldest message into a new buffer (*data, *size; xproc_free it).
 * XPROC_EMPTY on timeout. */
XPROC_API int xproc_queue_get(xproc_queue* queue, void** data, size_t* size, double timeout);
XPROC_API int xproc_queue_qsize(const xproc_queue* queue, size_t* out);
/* Unlinks a named queue (open handles keep working). XPROC_VALUE_ERROR when absent. */
XPROC_API int xproc_queue_remove(const char* name);
/* Frees the handle (the queue lives on while other handles or processes use it). */
XPROC_API void xproc_queue_close(xproc_queue* queue);

/* ---- Connections (multiprocessing.connection framing and authentication) -------------- */
typedef struct xproc_connection xproc_connection;
typedef struct xproc_listener xproc_listener;

/* Two connected ends. duplex 0: *a only receives and *b only sends. Made before fork(),
 * both work in the child; the messages travel through shared memory. */
XPROC_API int xproc_pipe(int duplex, xproc_connection** a, xproc_connection** b);
/* Listens on address ("host:port", a path, or "" for a fresh abstract unix address).
 * With an authkey (authkey_size > 0), accepted clients must pass the HMAC challenge. */
XPROC_API int xproc_listener_create(const char* address, const void* authkey, size_t authkey_size,
                                    xproc_listener** out);
/* The bound address, usable by xproc_client_connect (an abstract unix address reads
 * "unix:@name"); valid until the listener is closed. */
XPROC_API const char* xproc_listener_address(const xproc_listener* listener);
/* Waits for a client. XPROC_AUTHENTICATION_ERROR for a client with the wrong key (the
 * listener stays usable). */
XPROC_API int xproc_listener_accept(xproc_listener* listener, xproc_connection** out);
XPROC_API void xproc_listener_close(xproc_listener* listener);
/* Connects to a Listener (xproc's or CPython's multiprocessing one). */
XPROC_API int xproc_client_connect(const char* address, const void* authkey, size_t authkey_size,
                                   xproc_connection** out);
XPROC_API int xproc_connection_send_bytes(xproc_connection* connection, const void* data, size_t size);
/* Blocks for the next message (*data, *size; xproc_free it). XPROC_EOF when the peer
 * closed. */
XPROC_API int xproc_connection_recv_bytes(xproc_connection* connection, void** data, size_t* size);
/* *ready = whether a message can be read within timeout seconds. */
XPROC_API int xproc_connection_poll(xproc_connection* connection, double timeout, int* ready);
XPROC_API void xproc_connection_close(xproc_connection* connection);

/* ---- Manager dicts and lists (Cap'n Proto RPC; values are Value messages) ------------ */
typedef struct xproc_manager xproc_manager;
typedef struct xproc_dict xproc_dict;
typedef struct xproc_list xproc_list;

/* Connects to a Manager server (started by C++, Python or `xproc serve`). Each thread
 * uses its own connection, made on first use. */
XPROC_API int xproc_manager_connect(const char* address, const void* authkey, size_t authkey_size, xproc_manager** out);
/* The same over TLS, for a "tls:host:port" address: the server's certificate must chain to
 * the PEM file ca_file (NULL: the system's trusted CAs) and name server_name (NULL: the
 * address's host); cert_file and key_file (NULL: none) are the client's own certificate.
 * XPROC_CONNECTION_ERROR when the handshake fails. */
XPROC_API int xproc_manager_connect_tls(const char* address, const void* authkey, size_t authkey_size,
                                        const char* ca_file, const char* cert_file, const char* key_file,
                                        const char* server_name, xproc_manager** out);
XPROC_API void xproc_manager_close(xproc_manager* manager);
/* The dict (list) registered under name, created if new; name NULL or "": a new one.
 * The handle stays valid after its manager handle is closed. */
XPROC_API int xproc_manager_dict(xproc_manager* manager, const char* name, xproc_dict** out);
XPROC_API int xproc_manager_list(xproc_manager* manager, const char* name, xproc_list** out);
/* Keys and values are Value messages. XPROC_KEY_ERROR for a missing key. */
XPROC_API int xproc_dict_get(xproc_dict* dict, const void* key, size_t key_size, void** value, size_t* value_size);
XPROC_API int xproc_dict_set(xproc_dict* dict, const void* key, size_t key_size, const void* value, size_t value_size);
XPROC_API int xproc_dict_delete(xproc_dict* dict, const void* key, size_t key_size);
XPROC_API int xproc_dict_len(xproc_dict* dict, size_t* out);
XPROC_API void xproc_dict_close(xproc_dict* dict);
XPROC_API int xproc_list_append(xproc_list* list, const void* value, size_t value_size);
/* Negative indexes count from the end. XPROC_INDEX_ERROR when out of range. */
XPROC_API int xproc_list_get(xproc_list* list, int64_t index, void** value, size_t* value_size);
XPROC_API int xproc_list_len(xproc_list* list, size_t* out);
XPROC_API void xproc_list_close(xproc_list* list);

/* ---- Value messages without a Cap'n Proto library ------------------------------------ */
XPROC_API int xproc_value_from_int(int64_t value, void** data, size_t* size);
XPROC_API int xproc_value_from_text(const char* text, void** data, size_t* size);
/* XPROC_TYPE_ERROR when the Value is of another kind; XPROC_DECODE_ERROR for bad bytes. */
XPROC_API int xproc_value_to_int(const void* data, size_t size, int64_t* out);
/* A NUL-terminated copy (xproc_free it). */
XPROC_API int xproc_value_to_text(const void* data, size_t size, char** out);
/* Python's repr() of any Value, NUL-terminated (xproc_free it). */
XPROC_API int xproc_value_repr(const void* data, size_t size, char** out);

#ifdef __cplusplus
}
#endif

#endif /* XPROC_XPROC_H */
