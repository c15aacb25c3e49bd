// The frames a Manager client writes, built by hand from rpc.capnp: for the Manager stream
// target's fixed login and for its seeds (record_corpus), so both speak the server's
// protocol exactly as a client library does.
#pragma once

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>

#include <functional>
#include <string>

#include "xproc/manager.capnp.h"

namespace xproc::fuzz {

inline std::string frame(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  return std::string(reinterpret_cast<const char*>(words.begin()), words.size() * sizeof(capnp::word));
}

// Bootstrap (the Gate, as question 0 and import 0), then the Gate's challenge and a login
// with `digest` (questions 1 and 2): the Manager is the login's answer, field 0.
inline std::string login_frames(const std::string& digest = "") {
  std::string out;
  {
    capnp::MallocMessageBuilder message;
    message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
    out += frame(message);
  }
  for (uint16_t method : {uint16_t{0}, uint16_t{1}}) {
    capnp::MallocMessageBuilder message;
    auto call = message.initRoot<capnp::rpc::Message>().initCall();
    call.setQuestionId(method + 1u);
    call.initTarget().initPromisedAnswer().setQuestionId(0);
    call.setInterfaceId(capnp::typeId<schema::Gate>());
    call.setMethodId(method);
    auto params = call.initParams().getContent();
    if (method == 1) {
      params.initAs<schema::Gate::LoginParams>().setDigest(
          kj::arrayPtr(reinterpret_cast<const kj::byte*>(digest.data()), digest.size()));
    } else {
      params.initAs<schema::Gate::ChallengeParams>();
    }
    out += frame(message);
  }
  return out;
}

// A call as question `question` on the capability in pointer 0 of the results of question
// `on_question` (pipelined): the caller fills its parameters.
template <typename Params>
std::string pipelined_call(uint32_t question, uint32_t on_question, uint64_t interface_id, uint16_t method,
                           const std::function<void(typename Params::Builder)>& fill) {
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  auto answer = call.initTarget().initPromisedAnswer();
  answer.setQuestionId(on_question);
  answer.initTransform(1)[0].setGetPointerField(0);
  call.setInterfaceId(interface_id);
  call.setMethodId(method);
  fill(call.initParams().getContent().initAs<Params>());
  return frame(message);
}

// A call on the Manager the login answered (question 2), as question `question`: the
// caller fills its parameters.
template <typename Params>
std::string manager_call(uint32_t question, uint16_t method,
                         const std::function<void(typename Params::Builder)>& fill) {
  return pipelined_call<Params>(question, 2, capnp::typeId<schema::Manager>(), method, fill);
}

}  // namespace xproc::fuzz
