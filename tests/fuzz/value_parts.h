// For the fuzz targets that look inside decoded Values.
#pragma once

#include "xproc/value.h"

namespace xproc::fuzz {

// Whether `v` or any part of it (items, keys and values, at any depth) satisfies `pred`.
template <typename Pred>
bool any_part(const Value& v, const Pred& pred) {
  if (pred(v)) return true;
  if (v.is_list()) {
    for (const Value& item : v.as_list()) {
      if (any_part(item, pred)) return true;
    }
  }
  bool found = false;
  if (v.is_map()) {
    v.as_map().for_each(
        [&](const Value& key, const Value& item) { found = found || any_part(key, pred) || any_part(item, pred); });
  }
  return found;
}

}  // namespace xproc::fuzz
