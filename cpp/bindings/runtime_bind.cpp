// saguaro._core.Runtime: the C++ runtime with Python adapters. Every call that can wait (poll,
// close, the destructor) releases the GIL so the workers, which call the adapters, can run.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "py_model.hpp"
#include "release_gil_delete.hpp"
#include "worker_hook.hpp"
#include "saguaro/runtime.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

namespace {

// The holder releases the GIL while the runtime joins its workers.
using RuntimeHolder = GilReleasingHolder<Runtime>;

py::dict request_metrics(const RequestMetrics& m) {
  py::dict d;
  d["prompt_tokens"] = m.prompt_tokens;
  d["generated_tokens"] = m.generated_tokens;
  d["rounds"] = m.rounds;
  d["accepted_histogram"] = m.accepted_histogram;
  d["proposed_per_position"] = m.proposed_per_position;
  d["accepted_per_position"] = m.accepted_per_position;
  d["lookups_per_position"] = m.lookups_per_position;
  d["hits_per_position"] = m.hits_per_position;
  d["backups_jit"] = m.backups_jit;
  d["backups_fast"] = m.backups_fast;
  d["speculations_from_cache"] = m.speculations_from_cache;
  d["prefill_s"] = m.prefill_s;
  d["time_to_first_token_s"] = m.time_to_first_token_s;
  d["total_s"] = m.total_s;
  return d;
}

py::dict runtime_metrics(const RuntimeMetrics& m) {
  py::dict d = request_metrics(m.totals);
  d["requests_submitted"] = m.requests_submitted;
  d["requests_finished"] = m.requests_finished;
  d["requests_failed"] = m.requests_failed;
  d["batched_rounds"] = m.rounds;
  d["round_rows"] = m.round_rows;
  d["round_s"] = m.round_s;
  d["target_verify_s"] = m.target_verify_s;
  d["target_prefill_s"] = m.target_prefill_s;
  d["draft_tree_s"] = m.draft_tree_s;
  d["draft_tree_hidden_s"] = m.draft_tree_hidden_s;
  d["draft_chain_s"] = m.draft_chain_s;
  d["draft_hidden_fraction"] = m.hidden_fraction();
  d["wait_for_tree_s"] = m.wait_for_tree_s;
  d["backup_s"] = m.backup_s;
  d["trees"] = m.trees;
  d["trees_abandoned"] = m.trees_abandoned;
  d["cache_publish_failures"] = m.cache_publish_failures;
  d["draft_failures"] = m.draft_failures;
  d["draft_reconnects"] = m.draft_reconnects;
  d["target_failures"] = m.target_failures;
  d["backup_critical_batch"] = m.backup_critical_batch;
  d["plain_rounds"] = m.plain_rounds;
  d["forwards_on_draft_threads"] = m.forwards_on_draft_threads;
  d["draft_prefills_deferred"] = m.draft_prefills_deferred;
  d["draft_catch_up_rows"] = m.draft_catch_up_rows;
  d["catch_up_rounds"] = m.catch_up_rounds;
  d["rounds_without_draft"] = m.rounds_without_draft;
  d["remote_q_wait_s"] = m.remote_q_wait_s;
  d["remote_q_fallbacks"] = m.remote_q_fallbacks;
  d["fanout"] = m.fanout;
  d["fanout_acceptance"] = m.fanout_acceptance;
  d["mode"] = m.mode;
  return d;
}

py::dict update_dict(const RequestUpdate& u) {
  py::dict d;
  d["new_tokens"] = u.tokens;
  d["finished"] = u.finished;
  d["finish_reason"] = u.finished ? py::object(py::str(finish_reason_name(u.finish_reason))) : py::object(py::none());
  d["error"] = u.error.empty() ? py::object(py::none()) : py::object(py::str(u.error));
  d["messages"] = u.messages;
  d["metrics"] = u.finished ? py::object(request_metrics(u.metrics)) : py::object(py::dict());
  return d;
}

RuntimeHolder make_runtime(py::object target, py::object draft, const RuntimeConfig& config,
                           py::object target_thread_init, py::object draft_thread_init, py::object set_target_threads,
                           bool test_plant_unadjusted_q) {
  RuntimeConfig c = config;  // the runtime keeps its own copy; the hooks are not settings
  c.target_thread_init = worker_hook(target_thread_init);
  c.set_target_threads = threads_hook(set_target_threads);
  c.draft_thread_init = worker_hook(draft_thread_init);
  c.test_plant_unadjusted_q = test_plant_unadjusted_q;
  auto target_model = std::make_shared<PyModel>(std::move(target), "target");
  std::shared_ptr<Model> draft_model;
  if (!draft.is_none()) draft_model = std::make_shared<PyModel>(std::move(draft), "draft");
  // The PyModels die with the runtime, possibly on a thread without the GIL: they take it themselves.
  return RuntimeHolder(new Runtime(std::move(target_model), std::move(draft_model), std::move(c)));
}

RuntimeHolder make_remote_runtime(py::object target, std::shared_ptr<TargetWire> wire, int64_t draft_vocab,
                                  int64_t draft_max_context, const RuntimeConfig& config, py::object target_thread_init) {
  RuntimeConfig c = config;
  c.target_thread_init = worker_hook(target_thread_init);
  auto target_model = std::make_shared<PyModel>(std::move(target), "target");
  return RuntimeHolder(new Runtime(std::move(target_model), std::move(wire), draft_vocab, draft_max_context, std::move(c)));
}

}  // namespace

void bind_runtime(py::module_& m) {
  py::class_<Runtime, RuntimeHolder>(m, "Runtime", "The C++ target/draft runtime; use saguaro.runtime.Runtime.")
      .def(py::init(&make_runtime), py::arg("target"), py::arg("draft"), py::arg("config"), py::kw_only(),
           py::arg("target_thread_init") = py::none(), py::arg("draft_thread_init") = py::none(),
           py::arg("set_target_threads") = py::none(), py::arg("_test_plant_unadjusted_q") = false)
      .def_static("with_remote_draft", &make_remote_runtime, py::arg("target"), py::arg("wire"),
                  py::arg("draft_vocab"), py::arg("draft_max_context"), py::arg("config"), py::kw_only(),
                  py::arg("target_thread_init") = py::none(),
                  "A runtime whose draft is in another process, behind a TargetWire (saguaro.distributed).")
      .def_property_readonly(
          "config", [](const Runtime& rt) { return RuntimeConfig(rt.config()); },
          "A copy of the RuntimeConfig the runtime runs with.")
      .def(
          "submit",
          [](Runtime& rt, std::vector<int32_t> prompt, float temperature, int32_t top_k, float top_p,
             int64_t max_new_tokens, std::vector<int32_t> stop_token_ids, uint64_t seed, uint64_t stream) {
            RequestParams p;
            p.temperature = temperature;
            p.top_k = top_k;
            p.top_p = top_p;
            p.max_new_tokens = max_new_tokens;
            p.stop_token_ids = std::move(stop_token_ids);
            p.seed = seed;
            p.stream = stream;
            py::gil_scoped_release release;
            return rt.submit(std::move(prompt), std::move(p));
          },
          // No defaults here: saguaro.runtime.RequestParams holds them and always passes every field.
          py::arg("prompt"), py::kw_only(), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"),
          py::arg("max_new_tokens"), py::arg("stop_token_ids"), py::arg("seed"), py::arg("stream"))
      .def(
          "poll",
          [](Runtime& rt, int64_t id, std::optional<double> timeout) {
            RequestUpdate u;
            {
              py::gil_scoped_release release;
              u = rt.poll(id, timeout);
            }
            return update_dict(u);
          },
          py::arg("request_id"), py::arg("timeout") = py::none())
      .def(
          "set_update_callback",
          [](Runtime& rt, py::object fn) {
            // fn(list of request ids) runs on the target worker with the GIL taken for the call only;
            // an exception it raises is reported as unraisable and the worker goes on.
            if (fn.is_none()) {
              py::gil_scoped_release release;
              rt.set_update_callback({});
              return;
            }
            auto held = std::shared_ptr<py::object>(new py::object(std::move(fn)), [](py::object* o) {
              py::gil_scoped_acquire gil;
              delete o;
            });
            UpdateListener listener = [held](const std::vector<int64_t>& ids) {
              py::gil_scoped_acquire gil;
              try {
                (*held)(py::cast(ids));
              } catch (py::error_already_set& e) {
                e.discard_as_unraisable("saguaro runtime update callback");
              }
            };
            py::gil_scoped_release release;
            rt.set_update_callback(std::move(listener));
          },
          py::arg("callback"),
          "Call callback(request_ids) from the target worker whenever requests have news (None removes it).")
      .def("cancel", &Runtime::cancel, py::arg("request_id"), py::call_guard<py::gil_scoped_release>())
      .def("metrics", [](const Runtime& rt) { return runtime_metrics(rt.metrics()); })
      .def("close", &Runtime::close, py::call_guard<py::gil_scoped_release>());
}

}  // namespace saguaro::bindings
