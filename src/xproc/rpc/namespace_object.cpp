// The Manager's Namespace: attributes by name, printed as Python prints a Namespace.
#include <algorithm>

#include "xproc/errors.h"
#include "xproc/rpc/objects.h"
#include "xproc/rpc/value_ops.h"

namespace xproc::rpc {
namespace {

class NamespaceObject final : public SharedObject, public Served<schema::Namespace::Server> {
 public:
  explicit NamespaceObject(Runtime& runtime) : SharedObject(runtime, schema::Kind::NAMESPACE) {}

  capnp::Capability::Client client(Session&) override { return kj::Own<schema::Namespace::Server>(kj::addRef(*this)); }
  void drop_contents() override { attributes_ = ValueMap(); }

 protected:
  kj::Promise<void> repr(ReprContext context) override {
    // Python: 'Namespace(' + ', '.join(sorted('%s=%r' % item)) + ')', hiding _private names.
    std::vector<std::string> parts;
    attributes_.for_each([&](const Value& name, const Value& value) {
      if (!name.as_text().starts_with('_')) parts.push_back(name.as_text() + "=" + value.repr());
    });
    std::sort(parts.begin(), parts.end());
    std::string text = "Namespace(";
    for (size_t i = 0; i < parts.size(); ++i) text += (i ? ", " : "") + parts[i];
    context.getResults().setText(text + ")");
    return kj::READY_NOW;
  }

  kj::Promise<void> getAttr(GetAttrContext context) override {
    Value name(std::string(context.getParams().getAttribute().cStr()));
    const Value* value = attributes_.find(name);
    if (!value) throw AttributeError("'Namespace' object has no attribute '" + name.as_text() + "'");
    value->to_capnp(context.getResults().initValue());
    return kj::READY_NOW;
  }

  kj::Promise<void> setAttr(SetAttrContext context) override {
    auto params = context.getParams();
    attributes_.set(Value(std::string(params.getAttribute().cStr())), runtime_.read(params.getValue()));
    return kj::READY_NOW;
  }

  kj::Promise<void> delAttr(DelAttrContext context) override {
    Value name(std::string(context.getParams().getAttribute().cStr()));
    if (!attributes_.erase(name)) throw AttributeError("'Namespace' object has no attribute '" + name.as_text() + "'");
    return kj::READY_NOW;
  }

  kj::Promise<void> items(ItemsContext context) override {
    write_entries(context.getResults().initItems(static_cast<unsigned>(attributes_.size())), attributes_);
    return kj::READY_NOW;
  }

 private:
  ValueMap attributes_;  // str -> value, in the order set
};

}  // namespace

kj::Own<SharedObject> make_namespace(Runtime& runtime) { return kj::refcounted<NamespaceObject>(runtime); }

}  // namespace xproc::rpc
