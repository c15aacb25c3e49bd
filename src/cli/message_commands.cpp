// See message_commands.h. What a queue carries is what its header says: xproc Values,
// raw bytes (schema id 0), or the struct whose id it records, which --schema must name.
#include "message_commands.h"

#include <capnp/compat/json.h>
#include <capnp/dynamic.h>
#include <capnp/message.h>
#include <capnp/schema-parser.h>
#include <capnp/serialize.h>
#include <kj/filesystem.h>

#include <fcntl.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "printable.h"
#include "value_literal.h"
#include "xproc/byte_queue.h"
#include "xproc/errors.h"
#include "xproc/message.h"
#include "xproc/queue.h"

namespace xproc::cli {
namespace {

using json = nlohmann::ordered_json;

struct MessageOptions {
  std::string name;
  std::string value;   // put
  std::string schema;  // FILE.capnp:Type, for typed queues
  double timeout = -1;
  bool json = false;
};

Timeout timeout_of(double seconds) {
  if (seconds < 0) return std::nullopt;
  return std::chrono::duration<double>(seconds);
}

// The struct type `spec` (FILE.capnp:Type, Type possibly Outer.Inner) names, read from the
// file with Cap'n Proto's schema parser; absolute imports are looked up where Cap'n Proto's
// and xproc's schemas are installed.
class SchemaFile {
 public:
  // The file system is reached from "/" by descriptor: kj's newDiskFilesystem() would warn
  // on stderr whenever $PWD is not the working directory.
  explicit SchemaFile(const std::string& spec)
      : root_(kj::newDiskReadableDirectory(kj::AutoCloseFd(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)))) {
    const auto colon = spec.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) {
      throw ValueError("--schema takes FILE.capnp:Type, not '" + spec + "'");
    }
    const std::string file = spec.substr(0, colon);
    const std::string type = spec.substr(colon + 1);
    for (const char* dir : {"/usr/local/include", "/usr/include"}) {
      KJ_IF_MAYBE (opened, root_->tryOpenSubdir(kj::Path::parse(dir + 1))) {
        import_dirs_.push_back(kj::mv(*opened));
      }
    }
    for (auto& dir : import_dirs_) import_path_.push_back(dir.get());
    try {
      const std::string absolute = std::filesystem::absolute(file).lexically_normal().string();
      auto parsed = parser_.parseFromDirectory(*root_, kj::Path::parse(absolute.substr(1)),
                                               kj::arrayPtr(import_path_.data(), import_path_.size()));
      size_t start = 0;
      for (;;) {
        const size_t dot = type.find('.', start);
        const std::string part = type.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        KJ_IF_MAYBE (nested, parsed.findNested(part)) {
          parsed = *nested;
        } else {
          throw ValueError("'" + file + "' has no type '" + type + "'");
        }
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
      if (parsed.getProto().which() != capnp::schema::Node::STRUCT) {
        throw ValueError("'" + type + "' in '" + file + "' is not a struct");
      }
      type_ = parsed.asStruct();
    } catch (const kj::Exception& e) {
      throw ValueError("cannot read the schema '" + file + "': " + std::string(e.getDescription().cStr()));
    }
  }

  capnp::StructSchema type() const { return type_; }

 private:
  kj::Own<const kj::ReadableDirectory> root_;
  std::vector<kj::Own<const kj::ReadableDirectory>> import_dirs_;
  std::vector<const kj::ReadableDirectory*> import_path_;
  capnp::SchemaParser parser_;
  capnp::StructSchema type_;
};

std::string hex_id(uint64_t id) { return schema_id_hex(id); }

// The queue `name`, and what it carries checked against --schema.
struct OpenedQueue {
  ByteQueue queue;
  std::unique_ptr<SchemaFile> schema;  // for a typed queue

  bool carries_values() const { return queue.schema_id() == capnp::typeId<schema::Value>(); }
  bool carries_bytes() const { return queue.schema_id() == 0; }
};

OpenedQueue open_queue(const MessageOptions& options) {
  OpenedQueue opened{ByteQueue::open(options.name), nullptr};
  const uint64_t id = opened.queue.schema_id();
  if (options.schema.empty()) {
    if (!opened.carries_values() && !opened.carries_bytes()) {
      throw ValueError("queue '" + options.name + "' carries messages of schema id " + hex_id(id) +
                       ": name their type with --schema FILE.capnp:Type");
    }
    return opened;
  }
  opened.schema = std::make_unique<SchemaFile>(options.schema);
  const uint64_t named = opened.schema->type().getProto().getId();
  if (named != id) {
    throw ValueError("queue '" + options.name + "' carries schema id " + hex_id(id) + ", and " + options.schema +
                     " is " + hex_id(named));
  }
  return opened;
}

void put_message(const MessageOptions& options) {
  OpenedQueue opened = open_queue(options);
  const Timeout timeout = timeout_of(options.timeout);
  if (opened.schema) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<capnp::DynamicStruct>(opened.schema->type());
    try {
      capnp::JsonCodec codec;
      codec.decode(kj::arrayPtr(options.value.data(), options.value.size()), root);
    } catch (const kj::Exception& e) {
      throw ValueError("not JSON of " + options.schema + ": " + std::string(e.getDescription().cStr()));
    }
    auto words = capnp::messageToFlatArray(message);
    opened.queue.put_bytes(std::as_bytes(std::span(words.begin(), words.size())), true, timeout);
    return;
  }
  if (opened.carries_bytes()) {
    // A bytes literal (b'\x01'), or else the text as it is, in UTF-8.
    std::string data = options.value;
    if (data.size() >= 3 && (data[0] == 'b' || data[0] == 'B') && (data[1] == '\'' || data[1] == '"')) {
      data = parse_value_literal(options.value).as_bytes();
    }
    opened.queue.put_bytes(std::as_bytes(std::span(data.data(), data.size())), true, timeout);
    return;
  }
  auto values = Queue<Value>::open(options.name);
  values.put(parse_value_literal(options.value), true, timeout);
}

std::string base64_of(std::span<const std::byte> bytes) {
  return base64(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// A typed message as JSON (Cap'n Proto's JSON codec) or Cap'n Proto's text form.
std::string typed_text(std::span<const std::byte> bytes, capnp::StructSchema type, bool as_json) {
  auto words = kj::heapArray<capnp::word>((bytes.size() + sizeof(capnp::word) - 1) / sizeof(capnp::word));
  std::memset(words.begin(), 0, words.size() * sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    if (bytes.size() % sizeof(capnp::word) != 0) KJ_FAIL_REQUIRE("the message is not whole 8-byte words");
    capnp::FlatArrayMessageReader reader(words);
    auto root = reader.getRoot<capnp::DynamicStruct>(type);
    if (as_json) {
      capnp::JsonCodec codec;
      return codec.encode(root).cStr();
    }
    return kj::str(root).cStr();
  } catch (const kj::Exception& e) {
    // It may have been taken: its bytes go with the error, so that nothing is lost.
    throw DecodeError("the message is not a " + std::string(type.getShortDisplayName().cStr()) + " (" +
                      std::string(e.getDescription().cStr()) + "); its bytes in base64: " + base64_of(bytes));
  }
}

// Takes (get) or copies (peek) the oldest message and prints it.
void show_message(const MessageOptions& options, bool take) {
  OpenedQueue opened = open_queue(options);
  const Timeout timeout = timeout_of(options.timeout);
  const bool block = options.timeout != 0;
  const std::vector<std::byte> bytes =
      take ? opened.queue.get_bytes(block, timeout) : opened.queue.peek_bytes(block, timeout);
  if (opened.schema) {
    std::cout << typed_text(bytes, opened.schema->type(), options.json) << "\n";
  } else if (opened.carries_values()) {
    Value value;
    try {
      value = detail::with_validated_root<schema::Value>(bytes, DecodeLimits{},
                                                         [](schema::Value::Reader r) { return Value::from_capnp(r); });
    } catch (const Error& e) {
      throw DecodeError(std::string("the message is not a Value (") + e.what() +
                        "); its bytes in base64: " + base64_of(bytes));
    }
    std::cout << (options.json ? value_to_json(value).dump(-1, ' ', true) : value.repr()) << "\n";
  } else if (options.json) {
    std::cout << json{{"$bytes", base64_of(bytes)}}.dump() << "\n";
  } else {
    std::cout << Value::bytes(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())).repr()
              << "\n";
  }
}

}  // namespace

void add_message_commands(CLI::App& app) {
  auto put_options = std::make_shared<MessageOptions>();
  auto* put = app.add_subcommand("put", "put one message on a named queue");
  put->footer(
      "VALUE is a Python literal or JSON for a queue of Values, a bytes literal (b'\\x01') or text for a queue of "
      "bytes, and JSON for a queue of a schema's messages (with --schema).\n\n"
      "Examples:\n"
      "  xproc put jobs \"{'id': 7, 'args': [1, 2.5, 'x']}\"\n"
      "  xproc put points '{\"x\": \"1\", \"y\": \"2\", \"name\": \"a\"}' --schema point.capnp:Point\n"
      "  xproc put raw \"b'\\x00\\x01'\" --timeout 5\n");
  put->add_option("NAME", put_options->name, "the queue's name (without the xproc. prefix)")->required();
  put->add_option("VALUE", put_options->value, "the message")->required();
  put->add_option("--schema", put_options->schema, "FILE.capnp:Type: the struct a typed queue carries");
  put->add_option("--timeout", put_options->timeout, "seconds to wait for room (default: as long as it takes)");
  put->callback([put_options] { put_message(*put_options); });

  for (const bool take : {true, false}) {
    const std::string command = take ? "get" : "peek";
    auto options = std::make_shared<MessageOptions>();
    auto* sub = app.add_subcommand(command, take ? "take one message from a named queue and print it"
                                                 : "print the oldest message of a named queue, leaving it there");
    sub->footer(
        "Prints the message in Python notation (a queue of Values or bytes) or Cap'n Proto's text form (a "
        "schema's messages), or JSON with --json: bytes as {\"$bytes\": base64}, and what JSON has no form for "
        "as {\"$repr\": Python's repr}.\n\n"
        "Examples:\n"
        "  xproc " +
        command +
        " jobs\n"
        "  xproc " +
        command +
        " jobs --json --timeout 0\n"
        "  xproc " +
        command + " points --schema point.capnp:Point --json\n");
    sub->add_option("NAME", options->name, "the queue's name (without the xproc. prefix)")->required();
    sub->add_option("--schema", options->schema, "FILE.capnp:Type: the struct a typed queue carries");
    sub->add_option("--timeout", options->timeout,
                    "seconds to wait for a message; 0 does not wait (default: as long as it takes)");
    sub->add_flag("--json", options->json, "print JSON");
    sub->callback([options, take] { show_message(*options, take); });
  }
}

}  // namespace xproc::cli
