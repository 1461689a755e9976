// ZRan: random access into a gzip stream (RAFS "ref" blobs, spec §5.5). The data of a ZRan blob
// is an original OCI layer (.tar.gz); a context names a place in it where inflation can start
// afresh: the compressed offset of a deflate block boundary, the bits of the byte before it that
// belong to the block, and the 32 KiB window (the dictionary) that the block may refer back to.
//
// Two halves: `zranInflate` decodes a context's output from its compressed range (the read path);
// `ZranIndexer` inflates a whole gzip stream once, handing back its output and the block
// boundaries where contexts may start (the builder). Both follow a gzip stream across members:
// a member's end resets the window, so the boundary after the next member's header needs none.
// Policy (which boundaries become contexts, which bytes are fetched) stays in TypeScript.
#include <zlib.h>

#include <cstring>
#include <vector>

#include "common.h"

namespace damselfly {
namespace {

constexpr uInt kWindow = 32768;
constexpr size_t kTrailer = 8;  // CRC-32 and ISIZE after each member's deflate data

std::string ZMessage(const z_stream& s, int ret) {
  return s.msg != nullptr ? s.msg : ("zlib error " + std::to_string(ret));
}

// Where a context starts, and the output wanted from it.
struct InflateJob {
  const uint8_t* src;
  size_t src_len;
  const uint8_t* dict;
  size_t dict_len;
  int bits;
  int byte;
  uint8_t* dst;
  size_t dst_len;
};

// Skips a gzip member's trailer and the next member's header: on return `s` decodes raw deflate
// again, at the next member's first block. False with `err` set when they are not there.
bool NextMember(z_stream* s, std::string* err) {
  if (s->avail_in < kTrailer) {
    *err = "the gzip stream ends inside a member trailer";
    return false;
  }
  s->next_in += kTrailer;
  s->avail_in -= static_cast<uInt>(kTrailer);
  // A header produces no output, and Z_BLOCK stops right after it: the caller's output space is
  // left alone (inflate wants a non-null next_out even so).
  Bytef* next_out = s->next_out;
  uInt avail_out = s->avail_out;
  Bytef none;
  int ret = inflateReset2(s, 31);  // gzip: parse the header
  while (ret == Z_OK) {
    s->next_out = &none;
    s->avail_out = 0;
    ret = inflate(s, Z_BLOCK);
    if (ret == Z_OK && (s->data_type & 128) != 0) break;
  }
  s->next_out = next_out;
  s->avail_out = avail_out;
  if (ret == Z_OK) {
    if (inflateReset2(s, -15) == Z_OK) return true;  // raw deflate again, with an empty window
    *err = "inflateReset2 failed";
    return false;
  }
  *err = ret == Z_BUF_ERROR || ret == Z_OK ? "the gzip stream ends inside a member header" : "not a gzip member after the previous one: " + ZMessage(*s, ret);
  return false;
}

// Fills job.dst exactly; false with `err` set otherwise.
bool DoInflate(const InflateJob& job, std::string* err) {
  if (job.bits < 0 || job.bits > 7 || job.byte < 0 || job.byte > 255) {
    *err = "context bits out of range";
    return false;
  }
  if (job.dict_len > kWindow || job.src_len > UINT32_MAX || job.dst_len > UINT32_MAX) {
    *err = "context too large";
    return false;
  }
  z_stream s{};
  if (inflateInit2(&s, -15) != Z_OK) {
    *err = "inflateInit2 failed";
    return false;
  }
  bool ok = true;
  if (job.bits != 0 && inflatePrime(&s, job.bits, job.byte >> (8 - job.bits)) != Z_OK) ok = false;
  if (ok && job.dict_len > 0 && inflateSetDictionary(&s, job.dict, static_cast<uInt>(job.dict_len)) != Z_OK) ok = false;
  if (!ok) *err = "cannot prime the inflater at the context";
  s.next_in = const_cast<Bytef*>(job.src);
  s.avail_in = static_cast<uInt>(job.src_len);
  s.next_out = job.dst;
  s.avail_out = static_cast<uInt>(job.dst_len);
  while (ok && s.avail_out > 0) {
    int ret = inflate(&s, Z_NO_FLUSH);
    if (ret == Z_STREAM_END) {
      if (s.avail_out == 0) break;  // the output ends with the member
      ok = NextMember(&s, err);
    } else if (ret == Z_BUF_ERROR) {
      *err = "the compressed range ends " + std::to_string(s.avail_out) + " bytes before the context's output does";
      ok = false;
    } else if (ret != Z_OK) {
      *err = "corrupt deflate data: " + ZMessage(s, ret);
      ok = false;
    }
  }
  inflateEnd(&s);
  return ok;
}

InflateJob JobArgs(const Napi::CallbackInfo& info) {
  auto src = U8Arg(info[0], "source");
  auto dict = U8Arg(info[1], "dictionary");
  auto dst = U8Arg(info[4], "destination");
  return {src.Data(), src.ByteLength(), dict.Data(), dict.ByteLength(), static_cast<int>(IntArg(info[2], "bits")),
          static_cast<int>(IntArg(info[3], "byte")), dst.Data(), dst.ByteLength()};
}

// zranInflate(src, dict, bits, byte, dst): dst filled with the output of the context that starts
// at src[0]; throws when src does not hold that much.
Napi::Value ZranInflate(const Napi::CallbackInfo& info) {
  std::string err;
  if (!DoInflate(JobArgs(info), &err)) throw Napi::Error::New(info.Env(), err);
  return info.Env().Undefined();
}

class InflateWorker : public Napi::AsyncWorker {
 public:
  explicit InflateWorker(const Napi::CallbackInfo& info)
      : Napi::AsyncWorker(info.Env()), deferred_(Napi::Promise::Deferred::New(info.Env())), job_(JobArgs(info)) {
    for (size_t i : {0, 1, 4}) refs_.emplace_back(Napi::Persistent(info[i].As<Napi::Object>()));
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::string err;
    if (!DoInflate(job_, &err)) SetError(err);
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  InflateJob job_;
  std::vector<Napi::ObjectReference> refs_;  // the buffers stay alive until the work is done
};

Napi::Value ZranInflateAsync(const Napi::CallbackInfo& info) {
  auto* w = new InflateWorker(info);
  auto p = w->Promise();
  w->Queue();
  return p;
}

// new ZranIndexer(minIn, minOut); push(input) inflates from `input` (the stream's next bytes) and
// returns { consumed, output, points, end }: how many input bytes it took, the output they gave
// (at most 256 KiB a call: push the rest again), and the block boundaries passed that lie at least
// minIn compressed or minOut uncompressed bytes after the previous one reported (the first always
// is), each { in, out, bits, byte, dict }: stream offsets of the boundary, and what `zranInflate`
// needs to start there (copying the window of every boundary would cost as much as the inflate). `end` once the last member ended exactly at the end of the input pushed so far;
// more input after that must be another member. finish() throws unless the stream ended there.
class ZranIndexer : public Napi::ObjectWrap<ZranIndexer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ZranIndexer", {InstanceMethod("push", &ZranIndexer::Push), InstanceMethod("finish", &ZranIndexer::Finish)});
  }
  explicit ZranIndexer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ZranIndexer>(info) {
    min_in_ = info.Length() > 0 && !info[0].IsUndefined() ? static_cast<uint64_t>(IntArg(info[0], "minIn")) : 0;
    min_out_ = info.Length() > 1 && !info[1].IsUndefined() ? static_cast<uint64_t>(IntArg(info[1], "minOut")) : 0;
    if (inflateInit2(&s_, 31) != Z_OK) throw Napi::Error::New(info.Env(), "inflateInit2 failed");
    ready_ = true;
  }
  ~ZranIndexer() override {
    if (ready_) inflateEnd(&s_);
  }

 private:
  // Output per call: the caller learns how much input each piece of output took at this grain.
  static constexpr size_t kOutCap = 256 << 10;

  Napi::Value Push(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto input = U8Arg(info[0], "input");
    if (failed_) throw Napi::Error::New(env, "the gzip stream was already found corrupt");
    std::vector<uint8_t> out(kOutCap);
    Napi::Array points = Napi::Array::New(env);
    s_.next_in = const_cast<Bytef*>(input.Data());
    s_.avail_in = static_cast<uInt>(std::min<size_t>(input.ByteLength(), UINT32_MAX));
    s_.next_out = out.data();
    s_.avail_out = static_cast<uInt>(out.size());
    const Bytef* start = s_.next_in;
    uint64_t out_base = total_out_;
    while (s_.avail_in > 0 && s_.avail_out > 0) {
      if (ended_) {  // the previous member ended: the next one starts here
        inflateReset(&s_);
        ended_ = false;
      }
      const Bytef* in_before = s_.next_in;
      Bytef* out_before = s_.next_out;
      int ret = inflate(&s_, Z_BLOCK);
      total_in_ += static_cast<uint64_t>(s_.next_in - in_before);
      total_out_ += static_cast<uint64_t>(s_.next_out - out_before);
      if (ret == Z_STREAM_END) {
        ended_ = true;
        continue;
      }
      if (ret == Z_BUF_ERROR) break;  // needs more input
      if (ret != Z_OK) {
        failed_ = true;
        throw Napi::Error::New(env, "corrupt gzip stream at compressed byte " + std::to_string(total_in_) + ": " + ZMessage(s_, ret));
      }
      bool boundary = (s_.data_type & 128) != 0 && (s_.data_type & 64) == 0;
      if (boundary && (!reported_ || total_in_ - last_in_ >= min_in_ || total_out_ - last_out_ >= min_out_)) {
        points.Set(points.Length(), Point(env, start));
        reported_ = true;
        last_in_ = total_in_;
        last_out_ = total_out_;
      }
    }
    size_t consumed = static_cast<size_t>(s_.next_in - start);
    if (consumed > 0) last_byte_ = *(s_.next_in - 1);
    Napi::Object r = Napi::Object::New(env);
    r.Set("consumed", Napi::Number::New(env, static_cast<double>(consumed)));
    r.Set("output", Napi::Buffer<uint8_t>::Copy(env, out.data(), static_cast<size_t>(total_out_ - out_base)));
    r.Set("points", points);
    r.Set("end", Napi::Boolean::New(env, ended_));
    return r;
  }

  // The boundary inflate just stopped at; `start` is where this call's input began.
  Napi::Object Point(Napi::Env env, const Bytef* start) {
    int bits = s_.data_type & 7;
    int byte = 0;
    if (bits != 0) byte = s_.next_in > start ? *(s_.next_in - 1) : last_byte_;
    std::vector<uint8_t> dict(kWindow);
    uInt dict_len = kWindow;
    if (inflateGetDictionary(&s_, dict.data(), &dict_len) != Z_OK) dict_len = 0;
    Napi::Object p = Napi::Object::New(env);
    p.Set("in", Napi::Number::New(env, static_cast<double>(total_in_)));
    p.Set("out", Napi::Number::New(env, static_cast<double>(total_out_)));
    p.Set("bits", Napi::Number::New(env, bits));
    p.Set("byte", Napi::Number::New(env, byte));
    p.Set("dict", Napi::Buffer<uint8_t>::Copy(env, dict.data(), dict_len));
    return p;
  }

  Napi::Value Finish(const Napi::CallbackInfo& info) {
    if (!ended_) throw Napi::Error::New(info.Env(), "the gzip stream ends inside a member (truncated)");
    return info.Env().Undefined();
  }

  z_stream s_{};
  bool ready_ = false;
  bool ended_ = false;
  bool failed_ = false;
  uint64_t total_in_ = 0;
  uint64_t total_out_ = 0;
  uint64_t min_in_ = 0;
  uint64_t min_out_ = 0;
  bool reported_ = false;
  uint64_t last_in_ = 0;
  uint64_t last_out_ = 0;
  uint8_t last_byte_ = 0;
};

}  // namespace

void InitZran(Napi::Env env, Napi::Object exports) {
  exports.Set("zranInflate", Napi::Function::New(env, ZranInflate, "zranInflate"));
  exports.Set("zranInflateAsync", Napi::Function::New(env, ZranInflateAsync, "zranInflateAsync"));
  exports.Set("ZranIndexer", ZranIndexer::Define(env));
}

}  // namespace damselfly
