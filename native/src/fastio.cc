// Reads on the serving hot path that may complete without leaving the event loop thread.
// readNoThrow(fd, buffer): read(2) with -errno as its result.
//
// preadvNoWait(fd, views, position, inMemory) reads into a scatter list with preadv2(RWF_NOWAIT):
// the kernel copies what is already in the page cache and refuses (EAGAIN) instead of waiting for
// a disk. A chunk-cache hit is then one system call on the main thread instead of a thread-pool
// round trip (which costs more than the copy itself); whatever would block is left to the
// asynchronous path. tmpfs and ramfs refuse RWF_NOWAIT (EOPNOTSUPP) although their reads never
// wait for a disk (Kata's shared directory lives under /run, a tmpfs on most hosts): that is
// answered -2 once, and the caller then passes inMemory = true for a plain preadv.
#include <fcntl.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <vector>

#include "common.h"

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

namespace damselfly {
namespace {

constexpr uint32_t kMaxIov = 1024;  // IOV_MAX on Linux

// Whether fd's file system keeps its files in memory (tmpfs, ramfs): reading them waits for no disk.
bool InMemory(int fd) {
  struct statfs st;
  if (::fstatfs(fd, &st) != 0) return false;
  return st.f_type == TMPFS_MAGIC || st.f_type == RAMFS_MAGIC;
}

// Returns the bytes read (possibly fewer than asked, 0 at end of file); -1 when nothing could be
// read without blocking (EAGAIN), or the file system does not support RWF_NOWAIT (EOPNOTSUPP) and
// is not a memory file system; -2 when it does not and is one (nothing read). Other errors throw.
Napi::Value PreadvNoWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto fd = static_cast<int>(IntArg(info[0], "fd"));
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "views must be an array of Uint8Array");
  Napi::Array views = info[1].As<Napi::Array>();
  auto position = static_cast<off_t>(IntArg(info[2], "position"));
  // -1 would make preadv2 read at (and move) the file's own offset.
  if (position < 0) throw Napi::RangeError::New(env, "position must not be negative");
  uint32_t n = views.Length();
  if (n == 0) return Napi::Number::New(env, 0);
  if (n > kMaxIov) n = kMaxIov;  // a short read: the caller continues with the rest
  std::vector<struct iovec> iov(n);
  for (uint32_t i = 0; i < n; i++) {
    // One napi_get_typedarray_info per view (the wrappers' Data() and ByteLength() ask twice, after
    // a type check): a guest's page-cache read brings 32 views.
    napi_value v;
    napi_typedarray_type type;
    size_t length;
    void* data;
    if (napi_get_element(env, views, i, &v) != napi_ok ||
        napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
      throw Napi::TypeError::New(env, "views must be an array of Uint8Array");
    }
    iov[i].iov_base = data;
    iov[i].iov_len = length;
  }
  bool in_memory = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  int flags = in_memory ? 0 : RWF_NOWAIT;
  for (;;) {
    ssize_t got = ::preadv2(fd, iov.data(), static_cast<int>(n), position, flags);
    if (got >= 0) return Napi::Number::New(env, static_cast<double>(got));
    if (errno == EINTR) continue;
    if (errno == EOPNOTSUPP && flags != 0 && InMemory(fd)) return Napi::Number::New(env, -2);
    if (errno == EAGAIN || errno == EOPNOTSUPP) return Napi::Number::New(env, -1);
    ThrowSys(env, flags != 0 ? "preadv2" : "preadv");
  }
}

// readNoThrow(fd, buffer) -> bytes read (0 at end of file), or -errno. For a non-blocking fd read
// until it is empty (/dev/fuse): the EAGAIN that ends every such loop is a result, not an
// exception, which Node's readSync builds with a stack trace at every wake-up.
Napi::Value ReadNoThrow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto fd = static_cast<int>(IntArg(info[0], "fd"));
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "buffer must be a Uint8Array");
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  ssize_t got = ::read(fd, buf.Data(), buf.ByteLength());
  return Napi::Number::New(env, got >= 0 ? static_cast<double>(got) : -static_cast<double>(errno));
}

// fadviseWillNeed(fd, offset, length): starts reading a range into the page cache without waiting
// for it (the chunk cache file ahead of a sequential reader). Errors are ignored: it is a hint.
Napi::Value FadviseWillNeed(const Napi::CallbackInfo& info) {
  auto fd = static_cast<int>(IntArg(info[0], "fd"));
  auto offset = static_cast<off_t>(IntArg(info[1], "offset"));
  auto length = static_cast<off_t>(IntArg(info[2], "length"));
  (void)::posix_fadvise(fd, offset, length, POSIX_FADV_WILLNEED);
  return info.Env().Undefined();
}

// allocAligned(size) -> ArrayBuffer of `size` bytes at a 4096-byte boundary (contents undefined),
// freed when collected: buffers for O_DIRECT reads, which need the memory aligned to the device's
// logical block size (512 or 4096). The memory is reported to V8 (as Node's own buffers are), so
// that dropped buffers are collected under memory pressure; its users pool them.
Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t size = IntArg(info[0], "size");
  if (size <= 0 || size > (int64_t{1} << 30)) throw Napi::RangeError::New(env, "size must be 1 byte to 1 GiB");
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, static_cast<size_t>(size)) != 0 || p == nullptr) throw Napi::Error::New(env, "out of memory");
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, p, static_cast<size_t>(size), [size](Napi::Env fenv, void* data) {
    ::free(data);
    Napi::MemoryManagement::AdjustExternalMemory(fenv, -size);
  });
  Napi::MemoryManagement::AdjustExternalMemory(env, size);
  return ab;
}

// discardPages(arrayBuffer): gives the pages of an idle buffer from allocAligned back to the kernel
// at once (MADV_DONTNEED; they read as zeros when touched again) instead of when the garbage
// collector gets to the buffer, which a daemon at rest may not do for a long time. Returns false
// for memory that does not start on a page.
Napi::Value DiscardPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "an ArrayBuffer is required");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  auto p = reinterpret_cast<uintptr_t>(ab.Data());
  size_t len = ab.ByteLength() & ~size_t{4095};
  if (p % 4096 != 0 || len == 0) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, ::madvise(reinterpret_cast<void*>(p), len, MADV_DONTNEED) == 0);
}

}  // namespace

void InitFastIo(Napi::Env env, Napi::Object exports) {
  exports.Set("preadvNoWait", Napi::Function::New(env, PreadvNoWait, "preadvNoWait"));
  exports.Set("fadviseWillNeed", Napi::Function::New(env, FadviseWillNeed, "fadviseWillNeed"));
  exports.Set("readNoThrow", Napi::Function::New(env, ReadNoThrow, "readNoThrow"));
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned, "allocAligned"));
  exports.Set("discardPages", Napi::Function::New(env, DiscardPages, "discardPages"));
}

}  // namespace damselfly
