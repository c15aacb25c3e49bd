// The bridge between a machine's named queues and a NATS JetStream cluster (`xproc bridge`):
// BridgeOut forwards a local queue's messages to a stream's subject, BridgeIn forwards a
// stream's messages, through a durable pull consumer, into a local queue. Programs keep using
// their local queues (any language, shared memory); the bridge alone speaks NATS.
//
//   auto nats = xproc::nats::connect({.servers = {"nats://10.0.0.2:4222"}});
//   xproc::nats::BridgeOut out(nats, {.queue = "orders", .subject = "orders.eu", .replicas = 3});
//   std::atomic<bool> stop{false};
//   out.run(stop);                     // until stop is set (a signal handler may set it)
//
// Messages travel as the local queue holds them (flat Cap'n Proto bytes), with the queue's
// schema id in the Xproc-Schema-Id header; BridgeIn refuses a message whose id is not the
// destination queue's. A bridge must be its queue's only consumer (BridgeOut) and its
// consumer's only client (BridgeIn).
//
// Delivery: BridgeOut stores each message in the stream exactly once while the stream's
// de-duplication window (2 minutes by default) spans a crash and the restart, at least once
// past it; BridgeIn puts each message into the local queue at least once (see BridgeIn).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "xproc/nats/connection.h"

namespace xproc::nats {

// What a bridge has done since it started. Read at any time from any thread (stats()).
struct BridgeStats {
  uint64_t messages = 0;  // forwarded: stored and removed (out), put and acknowledged (in)
  uint64_t bytes = 0;     // their payload bytes
  // Out: publishes the stream reported as duplicates (a message republished after a crash
  // between its store and its removal). In: redeliveries of messages already in the queue
  // (an acknowledgement lost with a server), acknowledged and not put again.
  uint64_t duplicates = 0;
  // Publishes, fetches and acknowledgements repeated after an error the cluster recovers
  // from (a server lost, a leader being elected, the connection re-established).
  uint64_t retries = 0;
};

// "forwarded 2000 messages (96000 bytes), 1 duplicate, 3 retries": the CLI's log line.
std::string stats_line(const BridgeStats& stats);

struct BridgeOutOptions {
  // The local named queue whose messages are forwarded, oldest first.
  std::string queue;
  // The subject they are published on.
  std::string subject;
  // The stream that stores them; empty: the subject with every character a stream name
  // may not hold ('.', '*', '>', ...) replaced by '_'.
  std::string stream;
  // Copies of the stream in the cluster, when the bridge creates it.
  int replicas = 1;
  // Create the stream (limits retention, so that several consumers may each read every
  // message; file storage) unless it exists; a stream of that name made otherwise is a
  // ValueError. False: the stream exists, made by an operator, and is used as it is.
  bool create_stream = true;
  // JetStream's de-duplication window of a stream the bridge creates: a bridge restarted
  // within it after a crash does not store a message twice.
  std::chrono::milliseconds duplicate_window{std::chrono::minutes(2)};
  // Called with a line when the bridge waits on the cluster (publishes not acknowledged,
  // retrying); nullptr: silent.
  std::function<void(const std::string&)> log;
};

// Forwards the local queue `queue` to the subject: peeks its oldest message, publishes it
// and waits for the stream's acknowledgement (retrying with the same message id through
// lost servers, leader elections and reconnections), then removes it from the queue. Each
// message's Nats-Msg-Id is "<queue>:<created_unix_ns>:<messages ever got from the queue>",
// the same whichever process computes it, so that a bridge killed after the store and
// before the removal republishes under the same id and the stream drops the copy.
class BridgeOut {
 public:
  // Opens the queue and makes (or checks) the stream. ValueError when the queue is absent
  // or the stream exists with another configuration; ConnectionError, TimeoutError,
  // AuthenticationError as connect().
  BridgeOut(std::shared_ptr<Connection> connection, BridgeOutOptions options);
  ~BridgeOut();
  BridgeOut(const BridgeOut&) = delete;
  BridgeOut& operator=(const BridgeOut&) = delete;

  // Forwards until `stop` is set (checked at least every 100 ms, and between retries): the
  // message in hand is finished if the stream has acknowledged it, else left in the queue.
  // Throws, stopping, on what retrying cannot mend: RuntimeError when another process took
  // from the queue (the message removed is not the one published), AuthenticationError when
  // the servers refuse publishing, MessageTooLarge when a message exceeds the server's
  // max_payload (it stays in the queue), RuntimeError when the stream holds the message's
  // id on another message (another publisher on the subject uses the bridge's ids; the
  // message stays in the queue). One thread at a time.
  void run(const std::atomic<bool>& stop);

  BridgeStats stats() const noexcept;
  const std::string& stream() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

struct BridgeInOptions {
  // The stream read from, and the durable pull consumer read through; the consumer is
  // created (explicit acknowledgements, from the stream's first message) when absent.
  std::string stream;
  std::string consumer;
  // The local named queue the messages are put into; its schema id is what every
  // message's Xproc-Schema-Id must say.
  std::string queue;
  // Messages fetched at once (JetStream holds them as delivered until each is acknowledged).
  int batch = 64;
  // How long a delivered message may stay unacknowledged before JetStream delivers it
  // again, for a consumer the bridge creates (an existing consumer keeps its own). While a
  // put waits for room in a full local queue, the bridge tells JetStream it is still working
  // on the messages in hand every third of it.
  std::chrono::milliseconds ack_wait{30000};
  std::function<void(const std::string&)> log;
};

// Forwards a stream, through a durable pull consumer, into the local queue `queue`: fetches
// a batch, and for each message in stream order checks its schema id, puts it (waiting
// while the queue is full: its maxsize holds the stream back) and acknowledges it.
//
// At least once, in stream order. A message is acknowledged only once it is in the local
// queue. A bridge killed between a put and its acknowledgement leaves that one message to
// be delivered again, to the next bridge on the consumer: the local queue gets it twice,
// the copies next to each other. The messages a killed bridge had fetched and not put come
// again once the consumer's ack_wait has run out; the next bridge waits for them rather
// than put later ones first (as it does for messages lost in flight with a server). Within
// one run nothing is put twice (a message delivered again because a server confirmed its
// acknowledgement and died before its peers recorded it is acknowledged again, not put),
// and a bridge that stops (stop set, or an error) hands the messages it had fetched and not
// put back at once (NAK), so that its successor need not wait. The order is not waited for
// on a consumer that limits deliveries (MaxDeliver), whose messages handing back would use
// up.
class BridgeIn {
 public:
  // Opens the queue, finds or creates the consumer and subscribes. ValueError when the
  // queue is absent or the consumer is not a pull consumer with explicit acknowledgements;
  // ValueError too when the stream does not exist; ConnectionError, TimeoutError,
  // AuthenticationError as connect().
  BridgeIn(std::shared_ptr<Connection> connection, BridgeInOptions options);
  ~BridgeIn();
  BridgeIn(const BridgeIn&) = delete;
  BridgeIn& operator=(const BridgeIn&) = delete;

  // Forwards until `stop` is set (checked at least every 100 ms, also while a put waits for
  // room). DecodeError, stopping, when a message carries no Xproc-Schema-Id or another id
  // than the queue's: the message is not acknowledged and stays in the stream; the error
  // names both ids and its stream sequence. One thread at a time.
  void run(const std::atomic<bool>& stop);

  BridgeStats stats() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace xproc::nats
