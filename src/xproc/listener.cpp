// Implementation of listener.h: address parsing, sockets, the handshake hooks.
#include "xproc/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "xproc/address_internal.h"
#include "xproc/auth.h"
#include "xproc/errors.h"
#include "xproc/poll_internal.h"
#include "xproc/syscall_internal.h"

namespace xproc {
namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

}  // namespace

namespace detail {

Address parse_address(const std::string& text) {
  if (text.rfind("unix:", 0) == 0) {
    const std::string rest = text.substr(5);
    if (!rest.empty() && rest[0] == '@') return {Address::kAbstract, rest.substr(1), {}, {}};
    return {Address::kPath, rest, {}, {}};
  }
  std::string tcp = text.rfind("tcp:", 0) == 0 ? text.substr(4) : std::string();
  if (!text.empty() && text[0] == '\0') return {Address::kAbstract, text.substr(1), {}, {}};
  if (tcp.empty() && !text.empty() && text[0] != '/' && text[0] != '.') {
    const size_t colon = text.rfind(':');
    if (colon != std::string::npos && all_digits(std::string_view(text).substr(colon + 1))) tcp = text;
  }
  if (!tcp.empty()) {
    const size_t colon = tcp.rfind(':');
    if (colon == std::string::npos || !all_digits(std::string_view(tcp).substr(colon + 1))) {
      throw ValueError("TCP address must be host:port, got '" + text + "'");
    }
    std::string host = tcp.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return {Address::kTcp, {}, host.empty() ? "127.0.0.1" : host, tcp.substr(colon + 1)};
  }
  if (text.empty()) throw ValueError("empty address");
  return {Address::kPath, text, {}, {}};
}

}  // namespace detail

namespace {

using detail::Address;

sockaddr_un unix_address(const Address& a, socklen_t& length) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t room = sizeof(addr.sun_path) - (a.kind == Address::kAbstract ? 1 : 1);
  if (a.path.size() > room || a.path.empty()) {
    throw ValueError("unix socket address must be 1 to " + std::to_string(room) + " bytes: '" + a.path + "'");
  }
  if (a.kind == Address::kAbstract) {
    std::memcpy(addr.sun_path + 1, a.path.data(), a.path.size());  // leading NUL: abstract
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + a.path.size());
  } else {
    std::memcpy(addr.sun_path, a.path.data(), a.path.size());
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.path.size() + 1);
  }
  return addr;
}

addrinfo* resolve(const Address& a, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  const int rc = getaddrinfo(a.host.c_str(), a.port.c_str(), &hints, &result);
  if (rc != 0) throw ValueError("cannot resolve '" + a.host + "': " + gai_strerror(rc));
  return result;
}

std::string random_abstract_name() {
  static std::atomic<int> counter = 0;
  return "xproc-listener-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

}  // namespace

// One client's handshake, run a message at a time as its bytes come (auth.h): the
// challenge goes out on accept, then its answer, our welcome, its challenge, our answer,
// its welcome.
struct Listener::Handshake {
  enum class Step { kAwaitAnswer, kAwaitChallenge, kAwaitWelcome };
  Handshake(Fd fd_, std::chrono::steady_clock::time_point deadline_, std::string challenge_)
      : fd(std::move(fd_)), deadline(deadline_), challenge(std::move(challenge_)) {}

  Fd fd;
  std::chrono::steady_clock::time_point deadline;
  std::string challenge;
  Step step = Step::kAwaitAnswer;
  std::string received;  // bytes of the frame being read
};

namespace {

// Sends one handshake message, framed (a fresh socket has room for these few bytes).
bool send_frame(int fd, std::string_view payload) {
  std::string frame(4, '\0');
  const uint32_t length = htonl(static_cast<uint32_t>(payload.size()));
  std::memcpy(frame.data(), &length, 4);
  frame += payload;
  const ssize_t n =
      detail::retry_on_eintr([&] { return ::send(fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL); });
  return n == static_cast<ssize_t>(frame.size());
}

// How many more bytes the frame begun in `buffer` needs (its length first, then its
// payload). AuthenticationError for a frame a handshake never sends.
size_t frame_bytes_missing(const std::string& buffer) {
  if (buffer.size() < 4) return 4 - buffer.size();
  uint32_t length;
  std::memcpy(&length, buffer.data(), 4);
  length = ntohl(length);
  if (length > kHandshakeMessageLimit) throw AuthenticationError("handshake message rejected: too long");
  return 4 + length - buffer.size();
}

}  // namespace

Listener::Listener(std::string address, int backlog, std::optional<std::string> authkey, ConnectionOptions options,
                   std::chrono::milliseconds handshake_timeout)
    : authkey_(std::move(authkey)), options_(options), handshake_timeout_(handshake_timeout) {
  if (address.empty()) address = std::string(1, '\0') + random_abstract_name();
  const Address a = detail::parse_address(address);
  if (a.kind == Address::kTcp) {
    addrinfo* info = resolve(a, true);
    int error_number = 0;
    for (addrinfo* p = info; p; p = p->ai_next) {
      Fd fd(socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol));
      if (!fd) continue;
      const int one = 1;
      setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (bind(fd.get(), p->ai_addr, p->ai_addrlen) == 0) {
        fd_ = std::move(fd);
        break;
      }
      error_number = errno;
    }
    freeaddrinfo(info);
    if (!fd_) throw_os_error("bind " + a.host + ":" + a.port, error_number ? error_number : EADDRNOTAVAIL);
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&bound), &length);
    char host[NI_MAXHOST], port[NI_MAXSERV];
    getnameinfo(reinterpret_cast<sockaddr*>(&bound), length, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    address_ = std::string(host) + ":" + port;
  } else {
    socklen_t length = 0;
    const sockaddr_un addr = unix_address(a, length);
    fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_) throw_os_error("socket", errno);
    if (bind(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), length) != 0) {
      const int error_number = errno;
      fd_.reset();
      throw_os_error("bind " + (a.kind == Address::kAbstract ? "@" + a.path : a.path), error_number);
    }
    if (a.kind == Address::kPath) unlink_path_ = a.path;
    address_ = a.kind == Address::kAbstract ? std::string(1, '\0') + a.path : a.path;
  }
  // Non-blocking: accepting takes what the backlog holds, then waits in poll() beside the
  // handshakes under way.
  if (listen(fd_.get(), backlog) != 0 || ::fcntl(fd_.get(), F_SETFL, ::fcntl(fd_.get(), F_GETFL) | O_NONBLOCK) != 0) {
    const int error_number = errno;
    close();
    throw_os_error("listen", error_number);
  }
}

Listener::Listener(Listener&& other) noexcept
    : fd_(std::move(other.fd_)),
      address_(std::move(other.address_)),
      unlink_path_(std::move(other.unlink_path_)),
      authkey_(std::move(other.authkey_)),
      options_(other.options_),
      handshake_timeout_(other.handshake_timeout_),
      handshakes_(std::move(other.handshakes_)) {
  other.unlink_path_.clear();
}

Listener& Listener::operator=(Listener&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::move(other.fd_);
    address_ = std::move(other.address_);
    unlink_path_ = std::exchange(other.unlink_path_, {});
    authkey_ = std::move(other.authkey_);
    options_ = other.options_;
    handshake_timeout_ = other.handshake_timeout_;
    handshakes_ = std::move(other.handshakes_);
  }
  return *this;
}

Listener::~Listener() { close(); }

void Listener::close() noexcept {
  handshakes_.clear();
  fd_.reset();
  if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
  unlink_path_.clear();
}

ByteConnection Listener::accept() {
  for (;;) {
    if (auto connection = try_accept(std::nullopt)) return std::move(*connection);
  }
}

std::optional<ByteConnection> Listener::try_accept(Timeout timeout) {
  using Clock = std::chrono::steady_clock;
  if (!fd_) throw OSError("listener is closed", EBADF);
  const auto until = ByteQueue::deadline(true, timeout);
  // A connection leaves its handshake in blocking mode, as a plain accept gives it.
  auto connected = [this](Fd fd) {
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return ByteConnection(fd.release(), true, true, options_);  // which owns it from here on
  };
  for (;;) {
    const auto now = Clock::now();
    // A client silent past its deadline goes; the others carry on.
    std::erase_if(handshakes_, [&](const auto& h) { return h->deadline <= now; });
    std::vector<pollfd> fds{{fd_.get(), POLLIN, 0}};
    auto wake_at = until;
    for (const auto& h : handshakes_) {
      fds.push_back({h->fd.get(), POLLIN, 0});
      if (!wake_at || h->deadline < *wake_at) wake_at = h->deadline;
    }
    // A wait with a deadline: after EINTR the loop comes round and waits for what is left.
    const int ready = ::poll(fds.data(), fds.size(), detail::poll_milliseconds(wake_at));
    if (ready < 0 && errno != EINTR) throw_os_error("poll", errno);
    if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
      for (;;) {  // everything the backlog holds
        Fd fd(
            detail::retry_on_eintr([&] { return accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK); }));
        if (!fd) {
          if (errno == ECONNABORTED) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          throw_os_error("accept", errno);
        }
        if (!authkey_) return connected(std::move(fd));
        auto h = std::make_unique<Handshake>(std::move(fd), Clock::now() + handshake_timeout_, make_challenge());
        // (A client gone before its challenge fails as one gone later does, as in CPython.)
        if (!send_frame(h->fd.get(), h->challenge)) throw AuthenticationError("client left during the handshake");
        handshakes_.push_back(std::move(h));
      }
    }
    for (size_t i = 1; ready > 0 && i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it =
          std::find_if(handshakes_.begin(), handshakes_.end(), [&](const auto& h) { return h->fd.get() == fds[i].fd; });
      if (it == handshakes_.end()) continue;
      Handshake& h = **it;
      try {
        // Never more than the frame in progress: what the client sends after its last
        // handshake message belongs to the connection.
        char bytes[4 + kHandshakeMessageLimit];
        const size_t missing = frame_bytes_missing(h.received);
        const ssize_t n = detail::retry_on_eintr([&] { return ::recv(h.fd.get(), bytes, missing, MSG_DONTWAIT); });
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n <= 0) throw AuthenticationError("client left during the handshake");
        h.received.append(bytes, static_cast<size_t>(n));
        if (frame_bytes_missing(h.received) == 0) {
          const std::string message = h.received.substr(4);
          h.received.clear();
          switch (h.step) {
            case Handshake::Step::kAwaitAnswer:
              if (!answers(*authkey_, h.challenge, message)) {
                send_frame(h.fd.get(), kFailure);
                throw AuthenticationError("digest received was wrong");
              }
              if (!send_frame(h.fd.get(), kWelcome)) throw AuthenticationError("client left during the handshake");
              h.step = Handshake::Step::kAwaitChallenge;
              break;
            case Handshake::Step::kAwaitChallenge:
              if (!send_frame(h.fd.get(), answer_to(*authkey_, message))) {
                throw AuthenticationError("client left during the handshake");
              }
              h.step = Handshake::Step::kAwaitWelcome;
              break;
            case Handshake::Step::kAwaitWelcome: {
              if (message != kWelcome) throw AuthenticationError("digest sent was rejected");
              Fd fd = std::move(h.fd);
              handshakes_.erase(it);
              return connected(std::move(fd));
            }
          }
        }
      } catch (const AuthenticationError&) {
        handshakes_.erase(it);  // closes it; the others go on at the next call
        throw;
      }
    }
    if (until && Clock::now() >= *until) return std::nullopt;
  }
}

ByteConnection Client(const std::string& address, std::optional<std::string> authkey, ConnectionOptions options) {
  const Address a = detail::parse_address(address);
  Fd fd;
  int error_number = 0;
  if (a.kind == Address::kTcp) {
    addrinfo* info = resolve(a, false);
    for (addrinfo* p = info; p; p = p->ai_next) {
      Fd attempt(socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol));
      if (!attempt) continue;
      // Not retried on EINTR: the interrupted connection goes on being made, and connecting
      // again fails (EALREADY). It counts as this address failing.
      if (connect(attempt.get(), p->ai_addr, p->ai_addrlen) == 0) {
        fd = std::move(attempt);
        break;
      }
      error_number = errno;
    }
    freeaddrinfo(info);
    if (fd) {
      const int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
  } else {
    socklen_t length = 0;
    const sockaddr_un addr = unix_address(a, length);
    fd.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw_os_error("socket", errno);
    const auto* target = reinterpret_cast<const sockaddr*>(&addr);
    if (detail::retry_on_eintr([&] { return connect(fd.get(), target, length); }) != 0) {
      error_number = errno;
      fd.reset();
    }
  }
  if (!fd) {
    throw ConnectionError("cannot connect to '" + (a.kind == Address::kAbstract ? "@" + a.path : address) +
                          "': " + std::strerror(error_number));
  }
  ByteConnection connection(fd.release(), true, true, options);  // which owns it from here on
  if (authkey) {
    try {
      answer_challenge(connection, *authkey);
      deliver_challenge(connection, *authkey);
    } catch (const EOFError& e) {
      throw AuthenticationError(std::string("server closed the connection during the handshake: ") + e.what());
    }
  }
  return connection;
}

}  // namespace xproc
