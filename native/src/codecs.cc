// Compression codecs: raw LZ4 blocks (no frame) and zstd frames, sync and on the libuv thread
// pool, plus a streaming zstd decoder for .tar.zst layers. Algorithm numbers are RAFS's
// (spec §1.1): 1 = lz4_block, 3 = zstd. Policy (stored-raw rule, size checks) stays in TypeScript.
#include <lz4.h>
#include <zstd.h>

#include <memory>
#include <vector>

#include "common.h"

namespace damselfly {
namespace {

constexpr int kLz4 = 1;
constexpr int kZstd = 3;

struct Bytes {
  const uint8_t* data;
  size_t size;
};

int AlgoArg(const Napi::Value& v) {
  int64_t a = IntArg(v, "algorithm");
  if (a != kLz4 && a != kZstd) throw Napi::RangeError::New(v.Env(), "unsupported codec " + std::to_string(a));
  return static_cast<int>(a);
}

// One compression context per thread: the pool threads and the main thread each keep their own.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  return ctx.get();
}
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  return ctx.get();
}

// Returns the compressed bytes, or an error string.
bool DoCompress(int algo, Bytes src, int level, std::vector<uint8_t>* out, std::string* err) {
  if (algo == kLz4) {
    if (src.size > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) { *err = "lz4 input too large"; return false; }
    out->resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(src.size))));
    // SAFETY: dst capacity is LZ4_compressBound(src.size), the documented worst case.
    int n = LZ4_compress_default(reinterpret_cast<const char*>(src.data), reinterpret_cast<char*>(out->data()),
                                 static_cast<int>(src.size), static_cast<int>(out->size()));
    if (n <= 0 && src.size > 0) { *err = "lz4 compression failed"; return false; }
    out->resize(static_cast<size_t>(n));
    return true;
  }
  out->resize(ZSTD_compressBound(src.size));
  // SAFETY: dst capacity is ZSTD_compressBound(src.size).
  size_t n = ZSTD_compressCCtx(ThreadCCtx(), out->data(), out->size(), src.data, src.size, level);
  if (ZSTD_isError(n)) { *err = std::string("zstd: ") + ZSTD_getErrorName(n); return false; }
  out->resize(n);
  return true;
}

// Decompresses into dst (whose size is the expected output size); returns bytes written or -1.
int64_t DoDecompress(int algo, Bytes src, uint8_t* dst, size_t dst_size, std::string* err) {
  if (algo == kLz4) {
    if (src.size > static_cast<size_t>(INT32_MAX) || dst_size > static_cast<size_t>(INT32_MAX)) {
      *err = "lz4 block too large";
      return -1;
    }
    // SAFETY: LZ4_decompress_safe never writes past dst_size and never reads past src.size.
    int n = LZ4_decompress_safe(reinterpret_cast<const char*>(src.data), reinterpret_cast<char*>(dst),
                                static_cast<int>(src.size), static_cast<int>(dst_size));
    if (n < 0) { *err = "corrupt lz4 block"; return -1; }
    return n;
  }
  // SAFETY: ZSTD_decompressDCtx is bounded by dst_size and fails with dstSize_tooSmall instead.
  size_t n = ZSTD_decompressDCtx(ThreadDCtx(), dst, dst_size, src.data, src.size);
  if (ZSTD_isError(n)) { *err = std::string("corrupt zstd frame: ") + ZSTD_getErrorName(n); return -1; }
  return static_cast<int64_t>(n);
}

Napi::Value Compress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int algo = AlgoArg(info[0]);
  auto src = U8Arg(info[1], "source");
  int level = info.Length() > 2 && !info[2].IsUndefined() ? static_cast<int>(IntArg(info[2], "level")) : 3;
  std::vector<uint8_t> out;
  std::string err;
  if (!DoCompress(algo, {src.Data(), src.ByteLength()}, level, &out, &err)) throw Napi::Error::New(env, err);
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

Napi::Value DecompressInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int algo = AlgoArg(info[0]);
  auto src = U8Arg(info[1], "source");
  auto dst = U8Arg(info[2], "destination");
  std::string err;
  int64_t n = DoDecompress(algo, {src.Data(), src.ByteLength()}, dst.Data(), dst.ByteLength(), &err);
  if (n < 0) throw Napi::Error::New(env, err);
  return Napi::Number::New(env, static_cast<double>(n));
}

// Compression on the libuv pool; the input stays referenced (and unmodified by callers) until done.
class CompressWorker : public Napi::AsyncWorker {
 public:
  CompressWorker(Napi::Env env, int algo, Napi::Uint8Array src, int level)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), algo_(algo), level_(level),
        src_ref_(Napi::Persistent(src)), src_{src.Data(), src.ByteLength()} {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::string err;
    if (!DoCompress(algo_, src_, level_, &out_, &err)) SetError(err);
  }
  void OnOK() override {
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(Env(), out_.data(), out_.size()));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int algo_;
  int level_;
  Napi::Reference<Napi::Uint8Array> src_ref_;
  Bytes src_;
  std::vector<uint8_t> out_;
};

class DecompressWorker : public Napi::AsyncWorker {
 public:
  DecompressWorker(Napi::Env env, int algo, Napi::Uint8Array src, Napi::Uint8Array dst)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), algo_(algo),
        src_ref_(Napi::Persistent(src)), dst_ref_(Napi::Persistent(dst)), src_{src.Data(), src.ByteLength()},
        dst_(dst.Data()), dst_size_(dst.ByteLength()) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::string err;
    n_ = DoDecompress(algo_, src_, dst_, dst_size_, &err);
    if (n_ < 0) SetError(err);
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(n_))); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int algo_;
  Napi::Reference<Napi::Uint8Array> src_ref_;
  Napi::Reference<Napi::Uint8Array> dst_ref_;
  Bytes src_;
  uint8_t* dst_;
  size_t dst_size_;
  int64_t n_ = 0;
};

Napi::Value CompressAsync(const Napi::CallbackInfo& info) {
  int algo = AlgoArg(info[0]);
  auto src = U8Arg(info[1], "source");
  int level = info.Length() > 2 && !info[2].IsUndefined() ? static_cast<int>(IntArg(info[2], "level")) : 3;
  auto* w = new CompressWorker(info.Env(), algo, src, level);
  auto p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value DecompressIntoAsync(const Napi::CallbackInfo& info) {
  int algo = AlgoArg(info[0]);
  auto src = U8Arg(info[1], "source");
  auto dst = U8Arg(info[2], "destination");
  auto* w = new DecompressWorker(info.Env(), algo, src, dst);
  auto p = w->Promise();
  w->Queue();
  return p;
}

// Streaming zstd decoder (for .tar.zst layers): decode(chunk) takes the next compressed bytes and
// returns at most kOutCap bytes of output; decode() with no chunk returns the next part of what
// the held input gives, until it returns nothing: then every byte given was consumed and the
// decoder waits for more. Bounded output per call: a frame of RLE blocks expands some 32,000
// times (4 bytes of input to 128 KiB), so one 1 MiB read of a layer would otherwise come back as
// 32 GiB from one call. finish() throws if the input stopped inside a frame.
class ZstdDecoder : public Napi::ObjectWrap<ZstdDecoder> {
 public:
  static constexpr size_t kOutCap = 1 << 20;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ZstdDecoder",
                       {InstanceMethod("decode", &ZstdDecoder::Decode), InstanceMethod("finish", &ZstdDecoder::Finish)});
  }
  explicit ZstdDecoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ZstdDecoder>(info), ctx_(ZSTD_createDStream()) {
    if (ctx_ == nullptr) throw Napi::Error::New(info.Env(), "ZSTD_createDStream failed");
  }
  ~ZstdDecoder() override { ZSTD_freeDStream(ctx_); }

 private:
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      auto src = U8Arg(info[0], "chunk");
      if (held_pos_ < held_.size() || output_pending_) {
        throw Napi::Error::New(env, "zstd decoder: decode(chunk) before the output of the previous chunk was taken (call decode() until it returns nothing)");
      }
      // A copy: the caller's buffer may be reused before the next call.
      held_.assign(src.Data(), src.Data() + src.ByteLength());
      held_pos_ = 0;
    }
    ZSTD_inBuffer in{held_.data(), held_.size(), held_pos_};
    std::unique_ptr<uint8_t[]> out(new uint8_t[kOutCap]);  // not zeroed: only what zstd writes is returned
    ZSTD_outBuffer ob{out.get(), kOutCap, 0};
    output_pending_ = false;
    while (ob.pos < ob.size) {
      size_t consumed_before = in.pos;
      size_t produced_before = ob.pos;
      size_t r = ZSTD_decompressStream(ctx_, &ob, &in);
      if (ZSTD_isError(r)) throw Napi::Error::New(env, std::string("corrupt zstd stream: ") + ZSTD_getErrorName(r));
      bool progress = ob.pos > produced_before || in.pos > consumed_before;
      // A call that neither consumed nor produced anything says nothing about frame boundaries
      // (after a complete frame it would report the next frame's header size).
      if (progress) in_frame_ = r != 0;
      if (!progress || (in.pos == in.size && ob.pos < ob.size)) break;  // all input used, all output flushed
    }
    held_pos_ = in.pos;
    // A full output buffer may leave output inside the decoder, even with all input consumed.
    output_pending_ = ob.pos == ob.size;
    if (held_pos_ == held_.size() && !output_pending_) {
      held_.clear();
      held_.shrink_to_fit();
      held_pos_ = 0;
    }
    return Napi::Buffer<uint8_t>::Copy(env, out.get(), ob.pos);
  }
  Napi::Value Finish(const Napi::CallbackInfo& info) {
    if (held_pos_ < held_.size() || output_pending_) throw Napi::Error::New(info.Env(), "zstd decoder: finish() before all output was taken");
    if (in_frame_) throw Napi::Error::New(info.Env(), "truncated zstd stream");
    return info.Env().Undefined();
  }

  /** Input given and not yet consumed (from held_pos_ on). */
  std::vector<uint8_t> held_;
  size_t held_pos_ = 0;
  /** The last call filled its output: the decoder may hold more. */
  bool output_pending_ = false;
  ZSTD_DStream* ctx_;
  bool in_frame_ = false;
};

}  // namespace

void InitCodecs(Napi::Env env, Napi::Object exports) {
  exports.Set("compress", Napi::Function::New(env, Compress, "compress"));
  exports.Set("decompressInto", Napi::Function::New(env, DecompressInto, "decompressInto"));
  exports.Set("compressAsync", Napi::Function::New(env, CompressAsync, "compressAsync"));
  exports.Set("decompressIntoAsync", Napi::Function::New(env, DecompressIntoAsync, "decompressIntoAsync"));
  exports.Set("ZstdDecoder", ZstdDecoder::Define(env));
}

}  // namespace damselfly
