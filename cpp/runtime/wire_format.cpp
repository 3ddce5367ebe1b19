#include "saguaro/wire_format.hpp"

#include <chrono>
#include <cstring>
#include <type_traits>
#include <vector>

namespace saguaro {

namespace {

constexpr uint32_t kMagic = 0x52574753;  // "SGWR" read as a little-endian u32
constexpr uint8_t kToDraftFrame = 1;
constexpr uint8_t kToTargetFrame = 2;
// A sane upper bound on any one vector: a corrupt length must not make the reader allocate terabytes.
constexpr uint64_t kMaxElements = uint64_t{1} << 32;

class Writer {
 public:
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const char*>(&v);
    out_.append(p, sizeof(T));
  }
  template <class T>
  void put_vector(const std::vector<T>& v) {
    put<uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <class T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), "a field");
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <class T>
  std::vector<T> get_vector() {
    const uint64_t n = get<uint64_t>();
    if (n > kMaxElements) throw WireError("wire frame: a vector of " + std::to_string(n) + " elements (corrupt frame)");
    need(n * sizeof(T), "a vector");
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return v;
  }
  std::string get_string() {
    const uint64_t n = get<uint64_t>();
    need(n, "a string");
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  void expect_end() const {
    if (pos_ != in_.size())
      throw WireError("wire frame: " + std::to_string(in_.size() - pos_) + " bytes left after the message");
  }

 private:
  void need(uint64_t bytes, const char* what) const {
    if (bytes > in_.size() - pos_)
      throw WireError(std::string("wire frame truncated while reading ") + what + " (" + std::to_string(in_.size()) +
                      " bytes)");
  }
  std::string_view in_;
  size_t pos_ = 0;
};

void put_header(Writer& w, uint8_t kind) {
  w.put<uint32_t>(kMagic);
  w.put<uint16_t>(kWireVersion);
  w.put<uint8_t>(kind);
}

void check_header(Reader& r, uint8_t want) {
  if (r.get<uint32_t>() != kMagic) throw WireError("not a saguaro wire frame (bad magic)");
  const uint16_t version = r.get<uint16_t>();
  if (version != kWireVersion)
    throw WireError("saguaro wire version " + std::to_string(version) + " received, this build speaks version " +
                    std::to_string(kWireVersion));
  const uint8_t kind = r.get<uint8_t>();
  if (kind != want)
    throw WireError("wire frame of kind " + std::to_string(kind) + " where kind " + std::to_string(want) +
                    " was expected");
}

void put_params(Writer& w, const ProcessParams& p) {
  w.put(p.temperature);
  w.put(p.top_k);
  w.put(p.top_p);
  w.put(p.saguaro_c);
  w.put(p.saguaro_topn);
}

ProcessParams get_params(Reader& r) {
  ProcessParams p;
  p.temperature = r.get<float>();
  p.top_k = r.get<int32_t>();
  p.top_p = r.get<float>();
  p.saguaro_c = r.get<float>();
  p.saguaro_topn = r.get<int32_t>();
  return p;
}

template <class E>
E get_enum(Reader& r, int last) {
  const int32_t v = r.get<int32_t>();
  if (v < 0 || v > last) throw WireError("wire frame: message kind " + std::to_string(v) + " is unknown");
  return static_cast<E>(v);
}

}  // namespace

std::string encode(const ToDraft& msg) {
  Writer w;
  put_header(w, kToDraftFrame);
  w.put<int32_t>(static_cast<int32_t>(msg.kind));
  w.put<uint64_t>(msg.round);
  w.put<float>(msg.saguaro_c);
  w.put<uint8_t>(msg.test_plant_unadjusted_q);
  w.put(msg.q_key.seq);
  w.put(msg.q_key.accepted);
  w.put(msg.q_key.bonus);
  w.put_vector(msg.released);
  w.put<uint64_t>(msg.rows.size());
  for (const DraftRow& row : msg.rows) {
    w.put(row.seq);
    w.put(row.committed_from);
    w.put_vector(row.committed);
    put_params(w, row.params);
    w.put(row.key.seed);
    w.put(row.key.stream);
    w.put<uint8_t>(row.store_q);
    w.put(row.n);
    w.put_vector(row.drafts);
    w.put_vector(row.fork_fanout);
    w.put(row.depth);
    w.put_vector(row.sample_fanout);
  }
  return w.take();
}

ToDraft decode_to_draft(std::string_view frame) {
  Reader r(frame);
  check_header(r, kToDraftFrame);
  ToDraft msg;
  msg.kind = get_enum<ToDraft::Kind>(r, static_cast<int>(ToDraft::Kind::kQRequest));
  msg.round = r.get<uint64_t>();
  msg.saguaro_c = r.get<float>();
  msg.test_plant_unadjusted_q = r.get<uint8_t>() != 0;
  msg.q_key.seq = r.get<int64_t>();
  msg.q_key.accepted = r.get<int32_t>();
  msg.q_key.bonus = r.get<int32_t>();
  msg.released = r.get_vector<int64_t>();
  const uint64_t rows = r.get<uint64_t>();
  if (rows > kMaxElements) throw WireError("wire frame: too many rows (corrupt frame)");
  for (uint64_t i = 0; i < rows; ++i) {
    DraftRow row;
    row.seq = r.get<int64_t>();
    row.committed_from = r.get<int64_t>();
    row.committed = r.get_vector<int32_t>();
    row.params = get_params(r);
    row.key.seed = r.get<uint64_t>();
    row.key.stream = r.get<uint64_t>();
    row.store_q = r.get<uint8_t>() != 0;
    row.n = r.get<int32_t>();
    row.drafts = r.get_vector<int32_t>();
    row.fork_fanout = r.get_vector<int32_t>();
    row.depth = r.get<int32_t>();
    row.sample_fanout = r.get_vector<int32_t>();
    msg.rows.push_back(std::move(row));
  }
  r.expect_end();
  return msg;
}

std::string encode(const ToTarget& msg) {
  Writer w;
  put_header(w, kToTargetFrame);
  w.put<int32_t>(static_cast<int32_t>(msg.kind));
  w.put<uint64_t>(msg.round);
  w.put<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(msg.ended - msg.started).count());
  w.put<int64_t>(msg.published);
  w.put<int64_t>(msg.publish_failures);
  w.put<uint8_t>(msg.abandoned);
  w.put_string(msg.error);
  w.put<uint64_t>(msg.results.size());
  for (const ChainResult& c : msg.results) {
    w.put(c.seq);
    w.put_vector(c.tokens);
    w.put_vector(c.q);
  }
  w.put<uint64_t>(msg.entries.size());
  for (const CacheEntry& e : msg.entries) {
    w.put(e.key.seq);
    w.put(e.key.accepted);
    w.put(e.key.bonus);
    w.put<uint8_t>(e.store_q);
    w.put<uint8_t>(e.q_held);
    w.put_vector(e.tokens);
    w.put_vector(e.q);
  }
  return w.take();
}

ToTarget decode_to_target(std::string_view frame) {
  Reader r(frame);
  check_header(r, kToTargetFrame);
  ToTarget msg;
  msg.kind = get_enum<ToTarget::Kind>(r, static_cast<int>(ToTarget::Kind::kQRows));
  msg.round = r.get<uint64_t>();
  const auto took = std::chrono::nanoseconds(r.get<int64_t>());
  msg.published = r.get<int64_t>();
  msg.publish_failures = r.get<int64_t>();
  msg.abandoned = r.get<uint8_t>() != 0;
  msg.error = r.get_string();
  const uint64_t results = r.get<uint64_t>();
  if (results > kMaxElements) throw WireError("wire frame: too many results (corrupt frame)");
  for (uint64_t i = 0; i < results; ++i) {
    ChainResult c;
    c.seq = r.get<int64_t>();
    c.tokens = r.get_vector<int32_t>();
    c.q = r.get_vector<float>();
    msg.results.push_back(std::move(c));
  }
  const uint64_t entries = r.get<uint64_t>();
  if (entries > kMaxElements) throw WireError("wire frame: too many cache entries (corrupt frame)");
  for (uint64_t i = 0; i < entries; ++i) {
    CacheEntry e;
    e.key.seq = r.get<int64_t>();
    e.key.accepted = r.get<int32_t>();
    e.key.bonus = r.get<int32_t>();
    e.store_q = r.get<uint8_t>() != 0;
    e.q_held = r.get<uint8_t>() != 0;
    e.tokens = r.get_vector<int32_t>();
    e.q = r.get_vector<float>();
    msg.entries.push_back(std::move(e));
  }
  r.expect_end();
  msg.ended = std::chrono::steady_clock::now();
  msg.started = msg.ended - std::chrono::duration_cast<std::chrono::steady_clock::duration>(took);
  return msg;
}

}  // namespace saguaro
