// Tests for xproc::nats::connect against real nats-servers: refused credentials, nothing
// listening, and options that contradict each other.
#include "xproc/nats/connection.h"

#include <gtest/gtest.h>

#include <chrono>

#include "support/nats_server.h"
#include "xproc/errors.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using xproc::testing::NatsServers;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

TEST(NatsConnectionTest, RightCredentialsConnectAndWrongOnesRaiseAuthenticationError) {
  NatsServers server(1, {{"alice", "s3cret"}});
  auto nats = xproc::nats::connect(server.options());
  EXPECT_NE(nats->native(), nullptr);
  EXPECT_NE(nats->jetstream(), nullptr);

  xproc::nats::Options wrong = server.options();
  wrong.password = "guess";
  wrong.connect_timeout = 2s;
  const auto start = Clock::now();
  EXPECT_THROW(xproc::nats::connect(wrong), xproc::AuthenticationError);
  EXPECT_LT(seconds_since(start), 4.0);

  xproc::nats::Options anonymous = server.options();
  anonymous.user.clear();
  anonymous.password.clear();
  EXPECT_THROW(xproc::nats::connect(anonymous), xproc::AuthenticationError);
}

TEST(NatsConnectionTest, NothingListeningRaisesConnectionError) {
  xproc::nats::Options options;
  options.servers = {NatsServers::closed_url(), NatsServers::closed_url()};
  options.connect_timeout = 1s;
  const auto start = Clock::now();
  try {
    xproc::nats::connect(options);
    FAIL() << "expected ConnectionError";
  } catch (const xproc::ConnectionError& error) {
    // The message names the servers tried.
    EXPECT_NE(std::string(error.what()).find(options.servers[1]), std::string::npos) << error.what();
  }
  EXPECT_LT(seconds_since(start), 3.0);
}

TEST(NatsConnectionTest, ContradictoryOptionsRaiseValueError) {
  xproc::nats::Options none;
  none.servers.clear();
  EXPECT_THROW(xproc::nats::connect(none), xproc::ValueError);

  xproc::nats::Options two_logins;
  two_logins.user = "alice";
  two_logins.token = "t0ken";
  EXPECT_THROW(xproc::nats::connect(two_logins), xproc::ValueError);

  xproc::nats::Options half_certificate;
  half_certificate.cert_file = "client.pem";
  EXPECT_THROW(xproc::nats::connect(half_certificate), xproc::ValueError);

  xproc::nats::Options no_time;
  no_time.connect_timeout = 0ms;
  EXPECT_THROW(xproc::nats::connect(no_time), xproc::ValueError);
}

}  // namespace
