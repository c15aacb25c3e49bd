// Writes the fuzz targets' seed corpora from real traffic: Values sent through a real
// Pipe, the byte stream a real connection writes, images of a real pipe's control block
// and ring, of a real lane and of real queue segments taken while messages are in them,
// and what a real Manager server sends a client.
// Each seed is what its target reads (see the comment at the top of each *_fuzz.cpp).
//
// usage: record_corpus DIRECTORY   (tests/fuzz/corpus: one folder per target)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <complex>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "manager_frames.h"
#include "xproc/byte_connection.h"
#include "xproc/connection.h"
#include "xproc/manager.h"
#include "xproc/queue_layout_internal.h"
#include "xproc/ring_pipe_internal.h"
#include "xproc/rpc/lane.h"
#include "xproc/value.h"

namespace {

using xproc::Value;
using Bytes = std::vector<std::byte>;

std::filesystem::path g_root;

void write_seed(const std::string& target, const std::string& name, std::span<const std::byte> bytes) {
  const auto folder = g_root / target;
  std::filesystem::create_directories(folder);
  std::ofstream out(folder / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + (folder / name).string());
}

void append(Bytes& out, const void* data, size_t size) {
  const auto* bytes = static_cast<const std::byte*>(data);
  out.insert(out.end(), bytes, bytes + size);
}

Bytes read_memfd(int fd, size_t offset, size_t size) {
  Bytes out(size);
  if (::pread(fd, out.data(), size, static_cast<off_t>(offset)) != static_cast<ssize_t>(size)) {
    throw std::runtime_error("pread of a segment failed");
  }
  return out;
}

// Values of every kind, as Python and C++ programs send them.
std::vector<std::pair<std::string, Value>> sample_values() {
  static constexpr bool kTrue = true;
  Value deep = Value::list({});
  for (int i = 0; i < 60; ++i) deep = Value::list({deep});
  Value::List strings;
  for (int i = 0; i < 300; ++i) strings.emplace_back("item-" + std::to_string(i));
  capnp::MallocMessageBuilder point;
  point.initRoot<xproc::schema::Value>().setText("a typed struct");
  // A shared-memory Pipe end as Python sends one: its six descriptors at a resource sharer.
  capnp::MallocMessageBuilder pipe_end;
  auto handle = pipe_end.initRoot<xproc::schema::Handle>();
  handle.setSharer("/tmp/pymp-k2j4ikvf/listener-3v0_9rqp");
  auto keys = handle.initKeys(6);
  for (unsigned i = 0; i < 6; ++i) keys.set(i, i + 1);
  handle.setKind("pipe_end");
  Value::tuple({1, true, true, "0xb7abd7d3483534c4"}).to_capnp(handle.initDetails());
  return {
      {"none", Value()},
      {"bool", Value(true)},
      {"int_min", Value(std::numeric_limits<int64_t>::min())},
      {"int_max", Value(std::numeric_limits<int64_t>::max())},
      {"float_nan", Value(std::nan(""))},
      {"float_negative_zero", Value(-0.0)},
      {"float_inf", Value(-std::numeric_limits<double>::infinity())},
      {"text", Value("Process-1")},
      {"text_unicode", Value("h\xc3\xa9llo \xe2\x9c\x93")},
      {"text_not_utf8", Value(std::string("\xff\xfe\xed\xa0\x80", 5))},
      {"bytes", Value::bytes(std::string("\0a\xff", 3))},
      {"list", Value::list({1, 2.5, "three", nullptr, Value::bytes("4")})},
      {"dict_mixed_keys", Value::map({{0.25, nullptr}, {"Process_1", "1"}, {"2", 2}})},
      {"dict_duplicate_keys", Value::map({{1, "int"}, {true, "bool"}, {1.0, "float"}})},
      {"dict_list_key", Value::map({{Value::list({1, "a"}), "a list as a key"}})},
      {"tuple", Value::tuple({1, Value::list({Value::tuple({})}), "two"})},
      {"dict_tuple_key", Value::map({{Value::tuple({1, Value::tuple({"a"})}), Value::tuple({nullptr})}})},
      {"dict_dict_key", Value::map({{Value::map({{"k", 1}}), "a dict as a key"}})},
      {"nested", Value::map({{"jobs", Value::list({Value::map({{"id", 7}, {"tags", Value::list({"x"})}})})}})},
      {"deep", deep},
      {"large_list", Value(std::move(strings))},
      {"typed_struct", Value::typed(point.getRoot<xproc::schema::Value>().asReader())},
      {"handle", Value::typed(pipe_end.getRoot<xproc::schema::Handle>().asReader())},
      {"array_float64", Value(xproc::Array::of<double>(std::vector<double>{0.5, -0.0, 1e300, 2, 3, 4}, {2, 3}))},
      {"array_bool_0d", Value(xproc::Array::of<bool>(std::span<const bool>(&kTrue, 1), {}))},
      {"array_complex64_empty", Value(xproc::Array::of<std::complex<float>>({}, {0, 4}))},
      {"array_in_dict",
       Value::map(
           {{"frame", Value(xproc::Array::of<uint16_t>(std::vector<uint16_t>{1, 2, 3, 4}, {2, 1, 2}))}, {"id", 7}})},
      // C++ may key a map with an array; Python has no dict for it (numpy arrays and
      // writable memoryviews are unhashable).
      {"dict_array_key", Value::map({{Value(xproc::Array::of<int32_t>(std::vector<int32_t>{7}, {1})), "an array"}})},
      {"dict_array_in_tuple_key",
       Value::map({{Value::tuple({1, Value(xproc::Array::of<uint8_t>(std::vector<uint8_t>{}, {0}))}), "in a tuple"}})},
      {"proxy", Value::map({{"d", xproc::ProxyRef{0x5eed, 3, nullptr}},
                            {xproc::ProxyRef{0x5eed, 4, nullptr}, Value::tuple({xproc::ProxyRef{1, 3, nullptr}})}})},
  };
}

// The Values through a real Pipe: the bytes the receiving end gets.
void record_values() {
  xproc::ConnectionOptions options;
  auto [sender, receiver] = xproc::byte_pipe(true, options);
  xproc::Connection<Value> out(std::move(sender));
  xproc::ConnectionBase in(std::move(receiver));
  for (const auto& [name, value] : sample_values()) {
    out.send(value);
    const Bytes message = in.recv_bytes();
    for (const char* target : {"value_decode", "python_decode", "message_check"}) write_seed(target, name, message);
  }
  // A message of several segments, with far pointers, for the checked reader's side.
  capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);
  auto list = builder.initRoot<xproc::schema::Value>().initList(3);
  list[0].setText("far away");
  list[2].initMap(1)[0].initKey().setInt64(3);
  const auto words = capnp::messageToFlatArray(builder);
  write_seed("message_check", "several_segments",
             {reinterpret_cast<const std::byte*>(words.begin()), words.size() * sizeof(capnp::word)});
}

// What a connection writes on its socket for a few messages.
void record_stream() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
  xproc::Connection<Value> connection(xproc::ByteConnection(fds[0], true, true));
  auto values = sample_values();
  auto capture = [&](const std::string& name, size_t first, size_t count) {
    for (size_t i = first; i < first + count && i < values.size(); ++i) connection.send(values[i].second);
    Bytes stream(256 * 1024);
    const ssize_t n = ::recv(fds[1], stream.data(), stream.size(), MSG_DONTWAIT);
    stream.resize(n > 0 ? static_cast<size_t>(n) : 0);
    write_seed("byte_connection", name, stream);
  };
  capture("one_message", 0, 1);
  capture("small_messages", 1, 6);
  capture("dicts", 11, 6);
  capture("large_message", 18, 1);
  connection.send_bytes({});
  connection.send_bytes(std::as_bytes(std::span(std::string_view("raw bytes from send_bytes"))));
  Bytes stream(4096);
  const ssize_t n = ::recv(fds[1], stream.data(), stream.size(), MSG_DONTWAIT);
  stream.resize(n > 0 ? static_cast<size_t>(n) : 0);
  write_seed("byte_connection", "send_bytes_empty_and_raw", stream);
  ::close(fds[1]);
}

// A Pipe()'s control block and the ring of end 0, then the chunks of large messages on
// end 1's socket, after end 0 sent `messages` (pipe_ring_fuzz's input).
void record_pipe(const std::string& name, const std::vector<size_t>& sizes, size_t taken_first) {
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = 4096;
  auto ends = xproc::byte_pipe(true, options);
  xproc::ByteConnection& sender = ends.first;
  xproc::ByteConnection& receiver = ends.second;
  size_t seed = 0;
  auto send = [&](size_t size) {
    Bytes payload(size);
    for (auto& b : payload) b = static_cast<std::byte>(seed++ * 7);
    sender.send_bytes(payload);
  };
  for (size_t i = 0; i < taken_first; ++i) send(300);
  for (size_t i = 0; i < taken_first; ++i) receiver.recv_bytes();
  for (const size_t size : sizes) send(size);
  const auto handles = sender.shared_memory_handles();
  Bytes image = read_memfd(handles.memory, 0, sizeof(xproc::detail::PipeControl));
  const auto* control = reinterpret_cast<const xproc::detail::PipeControl*>(image.data());
  const Bytes ring = read_memfd(handles.memory, control->ring_offset[handles.side], xproc::detail::kRingOffset + 4096);
  image.insert(image.end(), ring.begin(), ring.end());
  const int socket = receiver.shared_memory_handles().socket;
  Bytes chunk(70 * 1024);
  for (;;) {
    const ssize_t n = ::recv(socket, chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n <= 0) break;
    const auto length = static_cast<uint16_t>(n);
    append(image, &length, sizeof(length));
    append(image, chunk.data(), static_cast<size_t>(n));
  }
  write_seed("pipe_ring", name, image);
}

// A lane after a real exchange: server_first bytes to the client and client_first back,
// all read; then unread bytes each way (lane_fuzz's input).
void record_lane(const std::string& name, uint16_t server_first, uint16_t client_first, size_t unread) {
  using xproc::rpc::Lane;
  Lane server = Lane::create(4096);
  Lane client = Lane::attach(::dup(server.memfd()), 4096);
  std::vector<unsigned char> bytes(4096);
  auto move = [&](Lane& from, Lane& to, size_t total, bool read) {
    while (total > 0) {
      const size_t n = std::min(total, bytes.size());
      for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>('A' + (total + i) % 26);
      from.write(bytes.data(), n);
      if (read) to.read(bytes.data(), n);
      total -= n;
    }
  };
  move(server, client, server_first, true);
  move(client, server, client_first, true);
  move(server, client, unread, false);
  move(client, server, unread / 2, false);
  Bytes image;
  append(image, &server_first, sizeof(server_first));
  append(image, &client_first, sizeof(client_first));
  const Bytes segment = read_memfd(server.memfd(), 0, 64 + 2 * 256 + 2 * 4096);
  image.insert(image.end(), segment.begin(), segment.end());
  write_seed("lane", name, image);
}

// A queue segment, whole, with the messages of `sizes` in it after `taken` went through.
// With `reserved` below the capacity, the ring grows past it (and may jump) as they go in.
void record_queue(const std::string& name, xproc::detail::QueueKind kind, size_t maxsize,
                  const std::vector<size_t>& sizes, size_t taken, size_t reserved = 0) {
  xproc::QueueOptions options;
  options.capacity_bytes = 1024;
  options.reserved_bytes = reserved;
  options.maxsize = maxsize;
  xproc::ByteQueue queue(options, kind == xproc::detail::QueueKind::kQueue ? 0 : 0x9eb32e19f86ee174, kind);
  for (size_t i = 0; i < taken; ++i) {
    queue.put_bytes(Bytes(100, std::byte{'t'}));
    queue.get_bytes();
  }
  const auto values = sample_values();
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto message = values[i % values.size()].second.encode();
    Bytes payload(reinterpret_cast<const std::byte*>(message.begin()),
                  reinterpret_cast<const std::byte*>(message.begin()) + message.size() * sizeof(capnp::word));
    payload.resize(sizes[i]);
    if (!queue.try_put_bytes(payload)) break;
  }
  write_seed("queue_segment", name, read_memfd(queue.anonymous_fd(), 0, xproc::detail::kRingOffset + 1024));
}

void record_names() {
  const std::vector<std::string> names = {"jobs",
                                          "pytest-4242-0123456789ab",
                                          "xproc.results",
                                          "a_b-c.d",
                                          ".",
                                          "..",
                                          "...",
                                          "",
                                          "has/slash",
                                          "has space",
                                          "tab\there",
                                          std::string(200, 'n'),
                                          std::string(201, 'n'),
                                          "escape\x1b[31mred",
                                          "caf\xc3\xa9",
                                          "back\\slash",
                                          std::string("nul\0inside", 10),
                                          "\xff\xfe"};
  for (size_t i = 0; i < names.size(); ++i) {
    write_seed("names", "name_" + std::to_string(i), std::as_bytes(std::span(names[i])));
  }
}

// What a Manager client writes: a login to a server with a key (the digest is wrong: the
// fuzzer cannot know the nonce), and calls after the fixed login of a keyless server.
void record_manager_streams() {
  using xproc::schema::Manager;
  auto seed = [](const std::string& name, bool logged_in, const std::string& frames) {
    std::string input(1, logged_in ? '\x01' : '\x00');
    input += frames;
    write_seed("manager_stream", name, std::as_bytes(std::span(input)));
  };
  seed("nothing", false, "");
  seed("wrong_login", false, xproc::fuzz::login_frames(std::string(32, 'k')));
  seed("logged_in_nothing", true, "");
  seed("named_dict", true,
       xproc::fuzz::manager_call<Manager::DictParams>(3, 0, [](auto params) { params.setRegisteredName("shared"); }));
  seed("dict_list_namespace", true,
       xproc::fuzz::manager_call<Manager::DictParams>(3, 0, [](auto) {}) +
           xproc::fuzz::manager_call<Manager::ListParams>(4, 1, [](auto) {}) +
           xproc::fuzz::manager_call<Manager::NamespaceParams>(5, 2,
                                                               [](auto params) { params.setRegisteredName("ns"); }));
  // A dict (question 3), then one batch on it (question 4): calls that run, one that fails,
  // and what a batch may not carry (a batch in it, a method that is not there).
  seed("dict_batch", true,
       xproc::fuzz::manager_call<Manager::DictParams>(3, 0, [](auto) {}) +
           xproc::fuzz::pipelined_call<xproc::schema::Object::BatchParams>(
               4, 3, capnp::typeId<xproc::schema::Object>(), 1, [](auto params) {
                 auto calls = params.initCalls(5);
                 const uint64_t dict = capnp::typeId<xproc::schema::Dict>();
                 calls[0].setInterfaceId(dict);
                 calls[0].setMethodId(2);  // setItem
                 auto set = calls[0].getParams().template initAs<xproc::schema::Dict::SetItemParams>();
                 set.initKey().setText("k");
                 set.initValue().setInt64(1);
                 calls[1].setInterfaceId(dict);
                 calls[1].setMethodId(0);  // getItem
                 calls[1].getParams().template initAs<xproc::schema::Dict::GetItemParams>().initKey().setText("k");
                 calls[2].setInterfaceId(dict);
                 calls[2].setMethodId(0);  // getItem of a missing key
                 calls[2].getParams().template initAs<xproc::schema::Dict::GetItemParams>().initKey().setInt64(7);
                 calls[3].setInterfaceId(capnp::typeId<xproc::schema::Object>());
                 calls[3].setMethodId(1);  // a batch in the batch
                 calls[4].setInterfaceId(dict);
                 calls[4].setMethodId(999);
               }));
}

// A TCP relay on the loopback between one client and `upstream_port`: returns its port,
// and runs until the server hangs up, recording what the server sends.
class RecordingRelay {
 public:
  explicit RecordingRelay(uint16_t upstream_port) : upstream_port_(upstream_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        ::listen(listener_, 1) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw std::runtime_error("cannot listen for the relay");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { relay(); });
  }
  ~RecordingRelay() {
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
  }
  uint16_t port() const { return port_; }
  // What the server sent, once it hung up.
  const std::string& from_server() {
    thread_.join();
    return from_server_;
  }

 private:
  void relay() {
    const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(upstream_port_);
    if (client < 0 || server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      throw std::runtime_error("the relay cannot connect");
    }
    char chunk[65536];
    for (bool open = true; open;) {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = ::recv(fds[i].fd, chunk, sizeof(chunk), 0);
        if (n <= 0) {
          open = false;
          break;
        }
        if (i == 1) from_server_.append(chunk, static_cast<size_t>(n));
        if (::send(fds[1 - i].fd, chunk, static_cast<size_t>(n), MSG_NOSIGNAL) != n) open = false;
      }
    }
    ::close(client);
    ::close(server);
  }

  uint16_t upstream_port_;
  uint16_t port_ = 0;
  int listener_ = -1;
  std::thread thread_;
  std::string from_server_;
};

// What a real Manager server sends the synchronous client while `use` runs: the login,
// then the replies to the proxies' calls (recorded by a relay between them).
void record_direct_session(const std::string& name, const std::function<void(xproc::Manager&)>& use) {
  xproc::ManagerOptions options;
  options.address = "tcp:127.0.0.1:0";
  options.authkey = "seed key";
  xproc::Manager server(options);
  const std::string& bound = server.address();
  RecordingRelay relay(static_cast<uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1))));
  {
    auto client = xproc::Manager::connect("tcp:127.0.0.1:" + std::to_string(relay.port()), "seed key",
                                          xproc::ConnectOptions{.shared_memory = false});
    use(client);
  }
  server.shutdown();  // the server hangs up: the relay ends
  const std::string& bytes = relay.from_server();
  write_seed("direct_session", name, std::as_bytes(std::span(bytes)));
}

void record_direct_sessions() {
  record_direct_session("login", [](xproc::Manager&) {});
  record_direct_session("dict", [](xproc::Manager& manager) {
    auto d = manager.dict();
    d.set("key", Value("value"));
    (void)d["key"];
    try {
      (void)d["missing"];  // a KeyError: a Return with an exception
    } catch (const xproc::KeyError&) {
    }
    (void)d.keys();
  });
  record_direct_session("list_and_lock", [](xproc::Manager& manager) {
    auto l = manager.list();
    l.append(Value(1));
    l.append(Value(Value::List{Value(2.5), Value("x")}));
    (void)l.copy();
    auto lock = manager.lock();
    (void)lock.acquire();
    lock.release();
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIRECTORY\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  record_values();
  record_stream();
  record_pipe("empty", {}, 0);
  record_pipe("inline_messages", {8, 24, 100, 1000}, 0);
  record_pipe("wrapped", {300, 300, 300}, 11);
  record_pipe("large_message", {40, 3000, 16}, 0);
  record_lane("fresh", 0, 0, 100);
  record_lane("wrapped", 4000, 5000, 3000);
  record_lane("full", 4096, 17, 4096);
  using xproc::detail::QueueKind;
  record_queue("empty", QueueKind::kQueue, 0, {}, 0);
  record_queue("few_messages", QueueKind::kQueue, 0, {16, 40, 8}, 0);
  record_queue("wrapped", QueueKind::kQueue, 0, {120, 64, 200}, 7);
  record_queue("full_joinable", QueueKind::kJoinable, 0, {200, 200, 200, 200, 200}, 1);
  record_queue("maxsize_simple", QueueKind::kSimple, 2, {32, 32, 32}, 3);
  record_queue("grown", QueueKind::kQueue, 0, {120, 64, 200, 200}, 0, 256);
  record_queue("grown_wrapped", QueueKind::kQueue, 0, {200, 150, 100, 200}, 3, 256);
  record_names();
  record_manager_streams();
  record_direct_sessions();
  return 0;
}
