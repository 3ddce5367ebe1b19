// Python view of the fan-out schedule and the n-gram fast backup, for the benchmark planner and tests.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "saguaro/fanout_schedule.hpp"
#include "saguaro/ngram_proposer.hpp"
#include "saguaro/runtime_config.hpp"

namespace py = pybind11;

namespace saguaro::bindings {
namespace {

FanoutKind kind_from_name(const std::string& name) {
  try {
    return parse_fanout_kind(name);  // the runtime's parser: one spelling of the kinds
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("FanoutSchedule: ") + e.what());
  }
}

FanoutSchedule make_schedule(int32_t k, const std::string& kind, int32_t budget, double r,
                             const std::optional<std::vector<int32_t>>& manual,
                             const std::optional<std::vector<int32_t>>& manual_after_miss,
                             double initial_acceptance) {
  FanoutConfig config;
  config.kind = kind_from_name(kind);
  if (config.kind != FanoutKind::kManual && (manual || manual_after_miss)) {
    throw std::invalid_argument("FanoutSchedule: manual lists are only used with kind='manual' (got kind='" + kind +
                                "')");
  }
  config.budget = budget;
  config.r = r;
  if (manual) config.manual = *manual;
  if (manual_after_miss) config.manual_after_miss = *manual_after_miss;
  config.initial_acceptance = initial_acceptance;
  return FanoutSchedule(k, std::move(config));
}

}  // namespace

void bind_schedule(py::module_& m) {
  py::class_<FanoutSchedule>(m, "FanoutSchedule",
                             "How the branch budget M is spread over positions 0..K (docs/algorithm.md §2.2), "
                             "from live acceptance and miss-rate estimates. Thread-safe.")
      // Defaults are FanoutConfig's (the one place they are written).
      .def(py::init(&make_schedule), py::arg("k"), py::arg("kind") = fanout_kind_name(FanoutConfig{}.kind),
           py::arg("budget") = FanoutConfig{}.budget, py::arg("r") = FanoutConfig{}.r, py::arg("manual") = py::none(),
           py::arg("manual_after_miss") = py::none(), py::arg("initial_acceptance") = FanoutConfig{}.initial_acceptance)
      .def("fanout", &FanoutSchedule::fanout, py::arg("after_miss") = false,
           "F_0..F_K for the next round (a list of k + 1 ints).")
      .def("observe_acceptance", &FanoutSchedule::observe_acceptance, py::arg("accepted"), py::arg("num_draft"),
           py::arg("after_miss") = false, "Record one verified row (accepted of num_draft drafts).")
      .def("observe_hit", &FanoutSchedule::observe_hit, py::arg("position"), py::arg("fanout"), py::arg("hit"),
           "Record whether the bonus token at `position` was among its `fanout` candidates; refits r.")
      .def("acceptance", &FanoutSchedule::acceptance, py::arg("after_miss") = false,
           "Live per-position acceptance estimate.")
      .def("r", &FanoutSchedule::r, "Live miss-rate exponent (1 - hit(F) ~ F^-r).")
      .def_property_readonly("k", &FanoutSchedule::k)
      .def_property_readonly("budget", &FanoutSchedule::budget)
      .def_property_readonly("kind", [](const FanoutSchedule& s) { return fanout_kind_name(s.kind()); })
      .def_property_readonly("hit_observations", &FanoutSchedule::hit_observations)
      .def_static("geometric", &FanoutSchedule::geometric, py::arg("a"), py::arg("r"), py::arg("k"), py::arg("budget"),
                  "Closed-form geometric fan-out: integers >= 1 summing to budget (budget >= k + 1).")
      .def_static("uniform", &FanoutSchedule::uniform, py::arg("k"), py::arg("budget"),
                  "Budget split evenly over k + 1 positions, remainder to the lowest positions.")
      .def("__repr__", [](const FanoutSchedule& s) {
        return "FanoutSchedule(k=" + std::to_string(s.k()) + ", kind='" + fanout_kind_name(s.kind()) +
               "', budget=" + std::to_string(s.budget()) + ")";
      });

  m.def("ngram_propose", &ngram_propose, py::arg("context"), py::arg("k"), py::arg("vocab"), py::arg("seed") = 0,
        py::arg("stream") = 0, py::arg("max_ngram") = 3, py::arg("min_ngram") = 1,
        "Fast backup: k tokens after the most recent earlier occurrence of the longest suffix n-gram of "
        "context (the whole committed sequence); random keyed tokens when nothing matches.");
}

}  // namespace saguaro::bindings
