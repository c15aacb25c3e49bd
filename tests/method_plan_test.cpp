// What rpc::plan_of makes of manager.capnp's conventions, read from the compiled schema:
// no manager runs here.
#include <capnp/message.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "xproc/errors.h"
#include "xproc/manager.capnp.h"
#include "xproc/rpc/dynamic_call.h"
#include "xproc/rpc/method_plan.h"

namespace xproc::rpc {
namespace {

std::vector<std::string> names_of(const std::vector<PlannedField>& fields) {
  std::vector<std::string> out;
  for (const auto& field : fields) out.push_back(field.name);
  return out;
}

TEST(MethodPlanTest, PositionalParametersLeaveOutOwnerAndFlags) {
  const auto& pop = plan_of(capnp::Schema::from<schema::Dict>(), "pop");
  EXPECT_EQ(names_of(pop.positional), (std::vector<std::string>{"key", "default"}));
  EXPECT_EQ(pop.positional[0].flag, nullptr);
  ASSERT_NE(pop.positional[1].flag, nullptr);
  EXPECT_STREQ(KJ_ASSERT_NONNULL(pop.positional[1].flag).getProto().getName().cStr(), "hasDefault");
  EXPECT_EQ(pop.owner, nullptr);

  const auto& acquire = plan_of(capnp::Schema::from<schema::Lock>(), "acquire");
  EXPECT_EQ(names_of(acquire.positional), (std::vector<std::string>{"blocking", "timeout"}));
  EXPECT_NE(acquire.owner, nullptr);
  EXPECT_EQ(acquire.positional[0].shape, FieldShape::kBool);
  EXPECT_EQ(acquire.positional[1].shape, FieldShape::kTimeout);
}

TEST(MethodPlanTest, ShapesOfParametersAndResults) {
  const auto& get_many = plan_of(capnp::Schema::from<schema::Dict>(), "getMany");
  ASSERT_EQ(get_many.positional.size(), 1u);
  EXPECT_EQ(get_many.positional[0].shape, FieldShape::kValueList);
  EXPECT_EQ(names_of(get_many.results), (std::vector<std::string>{"values", "present"}));
  EXPECT_EQ(get_many.results[0].shape, FieldShape::kValueList);
  EXPECT_EQ(get_many.results[1].shape, FieldShape::kOther);  // List(Bool)

  const auto& update = plan_of(capnp::Schema::from<schema::Dict>(), "update");
  EXPECT_EQ(update.positional[0].shape, FieldShape::kEntryList);
  const auto& get_slice = plan_of(capnp::Schema::from<schema::SharedList>(), "getSlice");
  EXPECT_EQ(get_slice.positional[0].shape, FieldShape::kSlice);
}

TEST(MethodPlanTest, PointerSlotsAreTheSchemas) {
  const auto& set_item = plan_of(capnp::Schema::from<schema::Dict>(), "setItem");
  ASSERT_EQ(set_item.positional.size(), 2u);
  for (const auto& parameter : set_item.positional) {
    EXPECT_EQ(parameter.pointer, parameter.field.getProto().getSlot().getOffset()) << parameter.name;
  }
  EXPECT_EQ(set_item.params_size.pointers, 2);
}

TEST(MethodPlanTest, AnInheritedMethodIsCalledOnTheInterfaceThatDeclaresIt) {
  const auto& get = plan_of(capnp::Schema::from<schema::JoinableQueue>(), "get");
  EXPECT_EQ(get.interface_id, capnp::typeId<schema::Queue>());
  const auto& join = plan_of(capnp::Schema::from<schema::JoinableQueue>(), "join");
  EXPECT_EQ(join.interface_id, capnp::typeId<schema::JoinableQueue>());
}

TEST(MethodPlanTest, APlanIsMadeOncePerThread) {
  const auto& first = plan_of(capnp::Schema::from<schema::Dict>(), std::string("getItem"));
  const auto& second = plan_of(capnp::Schema::from<schema::Dict>(), "getItem");
  EXPECT_EQ(&first, &second);
  // The same name on another interface is another method.
  EXPECT_NE(&first, &plan_of(capnp::Schema::from<schema::SharedList>(), "getItem"));
}

TEST(MethodPlanTest, UnknownMethodsAndParametersAreErrors) {
  EXPECT_THROW(plan_of(capnp::Schema::from<schema::Dict>(), "frobnicate"), AttributeError);
  const auto& get = plan_of(capnp::Schema::from<schema::Dict>(), "get");
  EXPECT_EQ(&get.parameter_named("default"), &get.positional[1]);
  EXPECT_THROW(get.parameter_named("owner"), TypeError);
  EXPECT_THROW(get.parameter_named("nothing"), TypeError);
}

TEST(MethodPlanTest, AnArgumentOfAnotherTypeIsATypeErrorAndWritesNothing) {
  const auto& value = plan_of(capnp::Schema::from<schema::Manager>(), "value");
  ASSERT_EQ(names_of(value.positional), (std::vector<std::string>{"registeredName", "typecode", "initial"}));
  capnp::MallocMessageBuilder message;
  auto params = message.getRoot<capnp::AnyPointer>()
                    .initAsAnyStruct(value.params_size.data, value.params_size.pointers)
                    .as<capnp::DynamicStruct>(value.params);
  EXPECT_THROW(set_param(params, value.positional[1], Value(int64_t{1})), TypeError);  // typecode is Text
  EXPECT_THROW(set_param(params, value.positional[2], std::string_view("i")), TypeError);
  EXPECT_FALSE(params.has(value.positional[1].field));
  EXPECT_FALSE(params.has(value.positional[2].field));
  set_param(params, value.positional[1], std::string_view("i"));
  set_param(params, value.positional[2], Value(int64_t{7}));
  EXPECT_EQ(params.get(value.positional[1].field).as<capnp::Text>(), "i");
  EXPECT_EQ(Value::from_capnp(params.get(value.positional[2].field).as<schema::Value>()), Value(int64_t{7}));
}

}  // namespace
}  // namespace xproc::rpc
