#include "xproc/rpc/method_plan.h"

#include <cctype>
#include <memory>
#include <unordered_map>

#include "xproc/errors.h"
#include "xproc/manager.capnp.h"
#include "xproc/value.capnp.h"

namespace xproc::rpc {
namespace {

std::string name_of(capnp::StructSchema::Field field) { return field.getProto().getName().cStr(); }

bool is_struct(capnp::Type type, capnp::StructSchema schema) { return type.isStruct() && type.asStruct() == schema; }

FieldShape shape_of(capnp::StructSchema::Field field) {
  const capnp::Type type = field.getType();
  if (is_struct(type, capnp::Schema::from<schema::Value>())) return FieldShape::kValue;
  if (is_struct(type, capnp::Schema::from<schema::Slice>())) return FieldShape::kSlice;
  if (type.isList()) {
    const capnp::Type element = type.asList().getElementType();
    if (is_struct(element, capnp::Schema::from<schema::Value>())) return FieldShape::kValueList;
    if (is_struct(element, capnp::Schema::from<schema::Value::Entry>())) return FieldShape::kEntryList;
    return FieldShape::kOther;
  }
  switch (type.which()) {
    case capnp::schema::Type::VOID: return FieldShape::kVoid;
    case capnp::schema::Type::TEXT: return FieldShape::kText;
    case capnp::schema::Type::DATA: return FieldShape::kData;
    case capnp::schema::Type::BOOL: return FieldShape::kBool;
    case capnp::schema::Type::INT8:
    case capnp::schema::Type::INT16:
    case capnp::schema::Type::INT32:
    case capnp::schema::Type::INT64: return FieldShape::kSigned;
    case capnp::schema::Type::UINT8:
    case capnp::schema::Type::UINT16:
    case capnp::schema::Type::UINT32:
    case capnp::schema::Type::UINT64: return FieldShape::kUnsigned;
    case capnp::schema::Type::FLOAT32:
    case capnp::schema::Type::FLOAT64: return name_of(field) == "timeout" ? FieldShape::kTimeout : FieldShape::kFloat;
    case capnp::schema::Type::INTERFACE: return FieldShape::kCapability;
    case capnp::schema::Type::ENUM: return FieldShape::kEnum;
    default: return FieldShape::kOther;
  }
}

// "hasTimeout" -> "timeout"; empty for a name that is not a flag's.
std::string flagged_by(std::string_view name) {
  if (name.size() <= 3 || !name.starts_with("has") || !std::isupper(static_cast<unsigned char>(name[3]))) return {};
  std::string flagged(name.substr(3));
  flagged[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(flagged[0])));
  return flagged;
}

PlannedField planned(capnp::StructSchema::Field field) {
  const auto proto = field.getProto();
  PlannedField out{.field = field, .name = proto.getName().cStr(), .shape = FieldShape::kOther};
  if (!proto.isSlot()) return out;  // a group: no shape of its own
  out.shape = shape_of(field);
  out.is_key = out.name == "key" || out.name == "keys";
  const capnp::Type type = field.getType();
  const bool is_pointer =
      type.isText() || type.isData() || type.isList() || type.isStruct() || type.isInterface() || type.isAnyPointer();
  if (is_pointer) out.pointer = static_cast<uint16_t>(proto.getSlot().getOffset());
  return out;
}

capnp::_::StructSize size_of(capnp::StructSchema schema) {
  const auto node = schema.getProto().getStruct();
  return {node.getDataWordCount(), node.getPointerCount()};
}

std::unique_ptr<MethodPlan> make_plan(capnp::InterfaceSchema interface, std::string_view method) {
  const std::string text(method);
  KJ_IF_MAYBE (found, interface.findMethodByName(text.c_str())) {
    auto plan =
        std::make_unique<MethodPlan>(MethodPlan{.method = *found,
                                                .name = text,
                                                .interface_id = found->getContainingInterface().getProto().getId(),
                                                .ordinal = static_cast<uint16_t>(found->getOrdinal()),
                                                .params = found->getParamType(),
                                                .params_size = size_of(found->getParamType()),
                                                .results_schema = found->getResultType()});
    for (auto field : plan->params.getFields()) {
      std::string name = name_of(field);
      if (name == "owner") {
        plan->owner = field;
        continue;
      }
      const std::string flagged = flagged_by(name);
      if (!flagged.empty() && plan->params.findFieldByName(flagged.c_str()) != nullptr) continue;
      PlannedField parameter = planned(field);
      std::string flag = "has" + name;
      flag[3] = static_cast<char>(std::toupper(static_cast<unsigned char>(flag[3])));
      parameter.flag = plan->params.findFieldByName(flag.c_str());
      plan->positional.push_back(std::move(parameter));
    }
    for (auto field : plan->results_schema.getFields()) plan->results.push_back(planned(field));
    return plan;
  }
  throw AttributeError("'" + std::string(interface.getShortDisplayName().cStr()) + "' has no method '" + text + "'");
}

struct PlanKey {
  capnp::Schema interface;
  std::string_view method;
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& key) const noexcept {
    return key.interface.hashCode() * 31 + std::hash<std::string_view>()(key.method);
  }
};

}  // namespace

const PlannedField& MethodPlan::parameter_named(std::string_view parameter) const {
  for (const auto& field : positional) {
    if (field.name == parameter) return field;
  }
  throw TypeError(name + "() has no parameter '" + std::string(parameter) + "'");
}

const MethodPlan& plan_of(capnp::InterfaceSchema interface, std::string_view method) {
  // Per thread, so that finding a plan takes no lock; the key's view is of the plan's own
  // name.
  thread_local std::unordered_map<PlanKey, std::unique_ptr<MethodPlan>, PlanKeyHash> plans;
  const auto found = plans.find(PlanKey{interface, method});
  if (found != plans.end()) return *found->second;
  auto plan = make_plan(interface, method);
  const PlanKey key{interface, plan->name};
  return *plans.emplace(key, std::move(plan)).first->second;
}

}  // namespace xproc::rpc
