// Split virtqueues (virtio 1.x §2.7) over guest memory: pop an available descriptor chain with
// every guest address and length checked against the memory table (indirect tables, loops and
// oversized chains refused), push used elements with the right barriers, and EVENT_IDX
// notification suppression. No FUSE or vhost-user policy here.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>

#include "common.h"
#include "guest_memory.h"

namespace damselfly {
namespace {

constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
constexpr uint16_t kAvailNoInterrupt = 1;
constexpr uint16_t kUsedNoNotify = 1;
constexpr uint32_t kMaxQueueSize = 32768;
// The longest chain accepted through an indirect table (Linux uses at most a few hundred).
constexpr uint32_t kMaxIndirect = 4096;
// popInto's slots before the pieces.
constexpr size_t kPopHeader = 7;

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

template <typename T>
T LoadRelaxed(const volatile void* p) {
  T v;
  // SAFETY: callers pass pointers inside a ring area validated at Resolve().
  std::memcpy(&v, const_cast<const void*>(p), sizeof(T));
  return v;
}

uint16_t LoadU16Acquire(const uint8_t* p) {
  // SAFETY: p is inside the validated avail ring and 2-byte aligned (ring alignment is checked).
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}

void StoreU16Release(uint8_t* p, uint16_t v) {
  // SAFETY: p is inside the validated used ring and 2-byte aligned.
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE);
}

class Virtqueue : public Napi::ObjectWrap<Virtqueue> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Virtqueue",
                       {InstanceMethod("setup", &Virtqueue::Setup), InstanceMethod("setBase", &Virtqueue::SetBase),
                        InstanceMethod("base", &Virtqueue::Base), InstanceMethod("popInto", &Virtqueue::PopInto),
                        InstanceMethod("lastError", &Virtqueue::LastError),
                        InstanceMethod("push", &Virtqueue::Push), InstanceMethod("shouldNotify", &Virtqueue::ShouldNotify),
                        InstanceMethod("enableNotify", &Virtqueue::EnableNotify),
                        InstanceMethod("disableNotify", &Virtqueue::DisableNotify), InstanceMethod("reset", &Virtqueue::Reset),
                        InstanceMethod("mapped", &Virtqueue::Mapped),
                        InstanceMethod("usedIndex", &Virtqueue::UsedIndex)});
  }

  // new Virtqueue(memoryTable)
  explicit Virtqueue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Virtqueue>(info) {
    table_ = MemoryTable::From(info[0]);
    if (table_ == nullptr) throw Napi::TypeError::New(info.Env(), "a MemoryTable is required");
    table_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  }

 private:
  // setup(size, descUaddr, availUaddr, usedUaddr, eventIdx): ring addresses are frontend VAs.
  // Everything is checked before anything changes: a setup refused for a running ring (new
  // addresses misaligned or outside guest memory) leaves it as it was, its size and areas checked
  // together, never a new size over the old areas.
  Napi::Value Setup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t size = IntArg(info[0], "size");
    if (size < 1 || size > kMaxQueueSize) throw Napi::RangeError::New(env, "queue size out of range");
    uint64_t desc = ToU64(info[1], "desc");
    uint64_t avail = ToU64(info[2], "avail");
    uint64_t used = ToU64(info[3], "used");
    bool event_idx = info[4].ToBoolean().Value();
    if (desc % 16 != 0 || avail % 2 != 0 || used % 4 != 0) throw Napi::RangeError::New(env, "misaligned ring address");
    if (!Resolve(static_cast<uint32_t>(size), desc, avail, used)) throw Napi::RangeError::New(env, "ring addresses lie outside guest memory");
    event_idx_ = event_idx;
    // As rust-vmm: continue from the used index the ring holds (a fresh ring holds 0).
    used_idx_ = LoadRelaxed<uint16_t>(used_ + 2);
    signalled_used_ = used_idx_;
    signalled_valid_ = false;
    ready_ = true;
    return env.Undefined();
  }

  static uint64_t ToU64(const Napi::Value& v, const char* what) {
    if (v.IsBigInt()) {
      bool lossless = false;
      uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw Napi::RangeError::New(v.Env(), std::string(what) + " out of range");
      return x;
    }
    return static_cast<uint64_t>(IntArg(v, what));
  }

  // Translates the three areas of a ring of `size` at these addresses for the current memory
  // table generation and, only when all three lie in guest memory, makes them the ring's.
  bool Resolve(uint32_t size, uint64_t desc_ua, uint64_t avail_ua, uint64_t used_ua) {
    std::shared_ptr<Mapping> kd, ka, ku;
    uint8_t* d = table_->TranslateUaddr(desc_ua, 16ull * size, &kd);
    uint8_t* a = table_->TranslateUaddr(avail_ua, 6ull + 2ull * size, &ka);
    uint8_t* u = table_->TranslateUaddr(used_ua, 6ull + 8ull * size, &ku);
    if (d == nullptr || a == nullptr || u == nullptr) return false;
    size_ = size;
    desc_ua_ = desc_ua;
    avail_ua_ = avail_ua;
    used_ua_ = used_ua;
    desc_ = d;
    avail_ = a;
    used_ = u;
    keep_ = {kd, ka, ku};
    generation_ = table_->generation();
    return true;
  }

  // The ring's own areas again, after a memory table change.
  bool Resolve() { return Resolve(size_, desc_ua_, avail_ua_, used_ua_); }

  // Whether the ring is set up; throws (code E_RING_UNMAPPED) while a memory table change left
  // part of it outside guest memory. The ring stays set up: once its memory is back (a region
  // removed and added again), the next call resolves it.
  bool EnsureResolved(Napi::Env env) {
    if (!ready_) return false;
    if (generation_ != table_->generation() && !Resolve()) {
      Napi::Error e = Napi::Error::New(env, "the ring is outside guest memory after a memory table change");
      e.Value().Set("code", Napi::String::New(env, "E_RING_UNMAPPED"));
      throw e;
    }
    return true;
  }

  // mapped(): whether the ring is set up and wholly inside guest memory (resolving it again after
  // a memory table change).
  Napi::Value Mapped(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), ready_ && (generation_ == table_->generation() || Resolve()));
  }

  Napi::Value SetBase(const Napi::CallbackInfo& info) {
    last_avail_ = static_cast<uint16_t>(IntArg(info[0], "base"));
    return info.Env().Undefined();
  }

  Napi::Value Base(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), last_avail_); }

  Napi::Value UsedIndex(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), used_idx_); }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    ready_ = false;
    keep_ = {};
    desc_ = avail_ = used_ = nullptr;
    last_avail_ = 0;
    used_idx_ = 0;
    return info.Env().Undefined();
  }

  // Adds one descriptor's guest range to the readable or writable pieces; false if it is outside
  // guest memory. A piece that continues the previous one in host memory (same window, adjacent)
  // extends it: a guest's page-sized buffers that happen to be contiguous become one view.
  bool AddRange(uint64_t addr, uint32_t len, bool writable, uint64_t* total) {
    std::vector<Piece>& dst = writable ? wr_pieces_ : rd_pieces_;
    pieces_.clear();
    if (!table_->TranslateGpa(addr, len, &pieces_)) return false;
    for (const Piece& p : pieces_) {
      if (!dst.empty()) {
        Piece& last = dst.back();
        if (last.region == p.region && last.window == p.window && last.offset + last.len == p.offset) {
          last.len += p.len;
          continue;
        }
      }
      dst.push_back(p);
    }
    *total += len;
    return true;
  }

  // popInto(out: Float64Array) -> 0 (no chain), 1 (a chain), 2 (the ring is corrupt: lastError()
  // says why) or 3 (the chain has more pieces than `out` has room for: out[0] says how many;
  // nothing was taken, call again with a larger array).
  // For a chain, out = [head, readBytes, writeBytes, readable pieces, writable pieces, usable,
  // memory table generation, then (window, offset, length) per piece, the readable ones first].
  // usable is 0 when the chain cannot be used (lastError() says why; it is still taken, to be
  // completed with length 0, and has no pieces). `window` indexes the memory table's windows() of
  // that generation: JavaScript makes the views. Numbers in a caller-owned array rather than
  // arrays of views made through N-API: a guest's 128 KiB page-cache read has 34 pieces (with its
  // headers), whose views cost about 3 µs through N-API and half a µs in JavaScript.
  Napi::Value PopInto(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      throw Napi::TypeError::New(env, "popInto needs a Float64Array");
    }
    Napi::Float64Array slots = info[0].As<Napi::Float64Array>();
    size_t room = slots.ElementLength();
    if (room < kPopHeader) throw Napi::RangeError::New(env, "popInto needs at least 7 slots");
    double* out = slots.Data();
    if (!EnsureResolved(env)) return Napi::Number::New(env, 0);
    uint16_t avail_idx = LoadU16Acquire(avail_ + 2);
    uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
    if (pending == 0) return Napi::Number::New(env, 0);
    if (pending > size_) {
      // The driver claims more buffers than the ring holds: refuse to interpret it.
      last_error_ = "avail index moved by more than the queue size";
      return Napi::Number::New(env, 2);
    }
    // SAFETY: the avail ring holds size_ entries after its 4-byte header (validated in Resolve).
    uint16_t head = LoadRelaxed<uint16_t>(avail_ + 4 + 2 * (last_avail_ % size_));
    rd_pieces_.clear();
    wr_pieces_.clear();
    uint64_t rbytes = 0, wbytes = 0;
    std::string error = WalkChain(head, &rbytes, &wbytes);
    if (!error.empty()) {
      rd_pieces_.clear();
      wr_pieces_.clear();
    }
    size_t pieces = rd_pieces_.size() + wr_pieces_.size();
    if (pieces > (room - kPopHeader) / 3) {
      out[0] = static_cast<double>(pieces);
      return Napi::Number::New(env, 3);
    }
    last_avail_++;
    last_error_ = std::move(error);
    out[0] = head;
    out[1] = static_cast<double>(rbytes);
    out[2] = static_cast<double>(wbytes);
    out[3] = static_cast<double>(rd_pieces_.size());
    out[4] = static_cast<double>(wr_pieces_.size());
    out[5] = last_error_.empty() ? 1 : 0;
    out[6] = static_cast<double>(table_->generation());
    double* at = out + kPopHeader;
    for (const std::vector<Piece>* list : {&rd_pieces_, &wr_pieces_}) {
      for (const Piece& p : *list) {
        *at++ = static_cast<double>(table_->FlatWindow(p));
        *at++ = static_cast<double>(p.offset);
        *at++ = static_cast<double>(p.len);
      }
    }
    return Napi::Number::New(env, 1);
  }

  // lastError(): why the last chain popped could not be used, or why the ring is corrupt.
  Napi::Value LastError(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return last_error_.empty() ? env.Undefined() : Napi::String::New(env, last_error_);
  }

  std::string WalkChain(uint16_t head, uint64_t* rbytes, uint64_t* wbytes) {
    if (head >= size_) return "head index beyond the queue size";
    const uint8_t* table = desc_;
    uint32_t table_size = size_;
    uint32_t idx = head;
    uint32_t seen = 0;
    bool indirect = false;
    bool in_writable = false;
    for (;;) {
      if (idx >= table_size) return "descriptor index beyond its table";
      if (++seen > table_size) return "descriptor chain loops or is longer than its table";
      // SAFETY: idx < table_size and the table spans table_size * 16 bytes (ring: Resolve; indirect: GpaPointer).
      Desc d = LoadRelaxed<Desc>(table + 16ull * idx);
      if (d.flags & kDescIndirect) {
        if (indirect) return "nested indirect descriptor";
        if (d.flags & kDescNext) return "indirect descriptor with NEXT";
        if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > kMaxIndirect) return "indirect table of invalid size";
        const uint8_t* t = table_->GpaPointer(d.addr, d.len);
        if (t == nullptr) return "indirect table outside guest memory";
        table = t;
        table_size = d.len / 16;
        idx = 0;
        seen = 0;
        indirect = true;
        continue;
      }
      bool writable = (d.flags & kDescWrite) != 0;
      if (!writable && in_writable) return "readable descriptor after a writable one";
      in_writable = in_writable || writable;
      if (!AddRange(d.addr, d.len, writable, writable ? wbytes : rbytes)) return "descriptor outside guest memory";
      if (!(d.flags & kDescNext)) return "";
      idx = d.next;
    }
  }

  // push(head, len): adds a used element and publishes it.
  Napi::Value Push(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!EnsureResolved(env)) return env.Undefined();
    uint32_t head = static_cast<uint32_t>(IntArg(info[0], "head"));
    uint32_t len = static_cast<uint32_t>(IntArg(info[1], "len"));
    if (head >= size_) throw Napi::RangeError::New(env, "head out of range");
    // SAFETY: the used ring holds size_ 8-byte elements after its 4-byte header (validated in Resolve).
    uint8_t* elem = used_ + 4 + 8ull * (used_idx_ % size_);
    std::memcpy(elem, &head, 4);
    std::memcpy(elem + 4, &len, 4);
    used_idx_++;
    StoreU16Release(used_ + 2, used_idx_);
    return env.Undefined();
  }

  // shouldNotify(): whether the driver wants an interrupt for what was pushed since the last one.
  Napi::Value ShouldNotify(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!EnsureResolved(env)) return Napi::Boolean::New(env, false);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool notify;
    if (event_idx_) {
      // SAFETY: used_event follows the avail ring's size_ entries (validated: 6 + 2 * size_ bytes).
      uint16_t used_event = LoadRelaxed<uint16_t>(avail_ + 4 + 2 * size_);
      uint16_t old = signalled_used_;
      uint16_t now = used_idx_;
      notify = !signalled_valid_ || static_cast<uint16_t>(now - used_event - 1) < static_cast<uint16_t>(now - old);
    } else {
      notify = (LoadRelaxed<uint16_t>(avail_) & kAvailNoInterrupt) == 0;
    }
    if (notify) {
      signalled_used_ = used_idx_;
      signalled_valid_ = true;
    }
    return Napi::Boolean::New(env, notify);
  }

  // enableNotify(): asks for kicks again; returns true if buffers arrived meanwhile (process them).
  Napi::Value EnableNotify(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!EnsureResolved(env)) return Napi::Boolean::New(env, false);
    if (event_idx_) {
      // SAFETY: avail_event follows the used ring's size_ elements (validated: 6 + 8 * size_ bytes).
      StoreU16Release(used_ + 4 + 8 * size_, last_avail_);
    } else {
      StoreU16Release(used_, 0);
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return Napi::Boolean::New(env, LoadU16Acquire(avail_ + 2) != last_avail_);
  }

  Napi::Value DisableNotify(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!EnsureResolved(env)) return env.Undefined();
    if (!event_idx_) StoreU16Release(used_, kUsedNoNotify);
    return env.Undefined();
  }

  MemoryTable* table_;
  Napi::ObjectReference table_ref_;
  uint32_t size_ = 0;
  uint64_t desc_ua_ = 0, avail_ua_ = 0, used_ua_ = 0;
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;
  std::vector<std::shared_ptr<Mapping>> keep_;
  uint64_t generation_ = 0;
  bool ready_ = false;
  bool event_idx_ = false;
  uint16_t last_avail_ = 0;
  uint16_t used_idx_ = 0;
  uint16_t signalled_used_ = 0;
  bool signalled_valid_ = false;
  std::vector<Piece> pieces_;     // scratch: one descriptor's pieces
  std::vector<Piece> rd_pieces_;  // the chain being walked, merged
  std::vector<Piece> wr_pieces_;
  std::string last_error_;
};

}  // namespace

void InitVring(Napi::Env env, Napi::Object exports) {
  exports.Set("MemoryTable", MemoryTable::Define(env));
  exports.Set("Virtqueue", Virtqueue::Define(env));
  // popInto's slots before the pieces: JavaScript reads the number from here, not a copy of it.
  exports.Set("popHeader", Napi::Number::New(env, static_cast<double>(kPopHeader)));
}

}  // namespace damselfly
