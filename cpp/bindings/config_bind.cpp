// saguaro._core.RuntimeConfig: the speculation settings, bound once. Enumerations cross as their
// Python spellings ("ssd", "jit", ...), unset optionals as None; every default is RuntimeConfig's.
// saguaro.SpeculationConfig converts to and from this type; validate() is the one validator.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "saguaro/runtime_config.hpp"

namespace py = pybind11;

namespace saguaro::bindings {
namespace {

template <typename T>
std::optional<std::vector<T>> optional_list(const std::vector<T>& v) {
  if (v.empty()) return std::nullopt;
  return v;
}

}  // namespace

void bind_config(py::module_& m) {
  py::class_<RuntimeConfig>(m, "RuntimeConfig",
                            "How the runtime speculates (include/saguaro/runtime_config.hpp); use "
                            "saguaro.SpeculationConfig, which converts to this.")
      .def(py::init<>())
      .def_property(
          "mode", [](const RuntimeConfig& c) { return std::string(mode_name(c.mode)); },
          [](RuntimeConfig& c, const std::string& s) { c.mode = parse_mode(s); })
      .def_readwrite("k", &RuntimeConfig::k)
      .def_property(
          "fanout_kind", [](const RuntimeConfig& c) { return std::string(fanout_kind_name(c.fanout.kind)); },
          [](RuntimeConfig& c, const std::string& s) { c.fanout.kind = parse_fanout_kind(s); })
      .def_property(
          "fanout_budget", [](const RuntimeConfig& c) { return c.fanout.budget; },
          [](RuntimeConfig& c, int32_t v) { c.fanout.budget = v; })
      .def_property(
          "fanout", [](const RuntimeConfig& c) { return optional_list(c.fanout.manual); },
          [](RuntimeConfig& c, std::optional<std::vector<int32_t>> v) { c.fanout.manual = v.value_or(std::vector<int32_t>{}); })
      .def_property(
          "fanout_after_miss", [](const RuntimeConfig& c) { return optional_list(c.fanout.manual_after_miss); },
          [](RuntimeConfig& c, std::optional<std::vector<int32_t>> v) {
            c.fanout.manual_after_miss = v.value_or(std::vector<int32_t>{});
          })
      .def_property(
          "fanout_r", [](const RuntimeConfig& c) { return c.fanout.r; },
          [](RuntimeConfig& c, double v) { c.fanout.r = v; })
      .def_readwrite("saguaro_c", &RuntimeConfig::saguaro_c)
      .def_property(
          "backup", [](const RuntimeConfig& c) { return std::string(backup_name(c.backup)); },
          [](RuntimeConfig& c, const std::string& s) { c.backup = parse_backup(s); })
      .def_property(
          "backup_critical_batch",
          [](const RuntimeConfig& c) {
            return c.backup_critical_batch > 0 ? std::optional<int64_t>(c.backup_critical_batch) : std::nullopt;
          },
          [](RuntimeConfig& c, std::optional<int64_t> v) {
            // Stored 0 means "computed from the measured hit rate and latencies"; a given value must be >= 1.
            if (v && *v < 1)
              throw std::invalid_argument("backup_critical_batch must be an integer >= 1 (or None), got " +
                                          std::to_string(*v));
            c.backup_critical_batch = v.value_or(0);
          })
      .def_property(
          "cache_policy", [](const RuntimeConfig& c) { return std::string(cache_policy_name(c.cache_policy)); },
          [](RuntimeConfig& c, const std::string& s) { c.cache_policy = parse_cache_policy(s); })
      .def_readwrite("strict", &RuntimeConfig::strict)
      .def_readwrite("target_threads", &RuntimeConfig::target_threads)
      .def_readwrite("draft_threads", &RuntimeConfig::draft_threads)
      .def_property(
          "target_cores", [](const RuntimeConfig& c) { return optional_list(c.target_cores); },
          [](RuntimeConfig& c, std::optional<std::vector<int>> v) { c.target_cores = v.value_or(std::vector<int>{}); })
      .def_property(
          "draft_cores", [](const RuntimeConfig& c) { return optional_list(c.draft_cores); },
          [](RuntimeConfig& c, std::optional<std::vector<int>> v) { c.draft_cores = v.value_or(std::vector<int>{}); })
      .def("validate", &validate, "Raise ValueError naming the field, the allowed values and the value given.")
      .def("__repr__", [](const RuntimeConfig& c) {
        return std::string("RuntimeConfig(mode='") + mode_name(c.mode) + "', k=" + std::to_string(c.k) +
               ", fanout_kind='" + fanout_kind_name(c.fanout.kind) + "', fanout_budget=" +
               std::to_string(c.fanout.budget) + ")";
      });
}

}  // namespace saguaro::bindings
