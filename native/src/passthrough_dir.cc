// Directory reading and whole-filesystem sync for the passthrough filesystem: getdents64 from a
// given d_off (the host filesystem's own stable cookie), a batch at a time so that huge
// directories are never held in memory, and syncfs off the JavaScript thread.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <vector>

#include "common.h"

namespace damselfly {
namespace {

// The kernel's struct linux_dirent64 header: d_ino u64 @0, d_off s64 @8, d_reclen u16 @16,
// d_type u8 @18, d_name @19 (NUL-terminated, record padded to 8 bytes).
constexpr size_t kDirentHeader = 19;

int FdArg(const Napi::Value& v) {
  int64_t x = IntArg(v, "fd");
  if (x < 0 || x > INT_MAX) throw Napi::RangeError::New(v.Env(), "fd is not a file descriptor");
  return static_cast<int>(x);
}

int64_t OffsetArg(const Napi::Value& v) {
  if (!v.IsBigInt()) throw Napi::TypeError::New(v.Env(), "offset must be a bigint");
  bool lossless = false;
  int64_t off = v.As<Napi::BigInt>().Int64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(v.Env(), "offset is out of range");
  return off;
}

// getdents(fd, offset: bigint, maxBytes) -> [{ino, off: bigint, type, name: Buffer}]: seeks the
// directory fd to offset (0, or a d_off this function returned) and reads one batch; [] at the end.
Napi::Value Getdents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0]);
  int64_t offset = OffsetArg(info[1]);
  int64_t max = IntArg(info[2], "maxBytes");
  if (max < 1024) max = 1024;
  if (max > (1 << 20)) max = 1 << 20;
  if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) ThrowSys(env, "lseek");
  std::vector<char> buf(static_cast<size_t>(max));
  long n = ::syscall(SYS_getdents64, fd, buf.data(), buf.size());
  if (n < 0) ThrowSys(env, "getdents64");
  Napi::Array out = Napi::Array::New(env);
  uint32_t count = 0;
  size_t pos = 0;
  const auto len = static_cast<size_t>(n);
  while (pos + kDirentHeader <= len) {
    // SAFETY: pos + 19 <= len <= buf.size(), so the fixed header is inside the buffer.
    const char* rec = buf.data() + pos;
    uint16_t reclen;
    std::memcpy(&reclen, rec + 16, sizeof reclen);
    if (reclen < kDirentHeader + 1 || pos + reclen > len) break;  // malformed: never read past n
    uint64_t ino;
    int64_t off;
    std::memcpy(&ino, rec, sizeof ino);
    std::memcpy(&off, rec + 8, sizeof off);
    // SAFETY: the name lies in [rec + 19, rec + reclen), inside the buffer; strnlen stays there.
    size_t namelen = ::strnlen(rec + kDirentHeader, reclen - kDirentHeader);
    Napi::Object e = Napi::Object::New(env);
    e.Set("ino", Napi::Number::New(env, static_cast<double>(ino)));
    e.Set("off", Napi::BigInt::New(env, off));
    e.Set("type", Napi::Number::New(env, static_cast<uint8_t>(rec[18])));
    e.Set("name", Napi::Buffer<char>::Copy(env, rec + kDirentHeader, namelen));
    out.Set(count++, e);
    pos += reclen;
  }
  return out;
}

class SyncfsWorker : public Napi::AsyncWorker {
 public:
  SyncfsWorker(Napi::Env env, int fd) : Napi::AsyncWorker(env), fd_(fd), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (::syncfs(fd_) != 0) err_ = errno;
  }
  void OnOK() override {
    if (err_ == 0) deferred_.Resolve(Env().Undefined());
    else deferred_.Reject(SysError(Env(), err_, "syncfs").Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_;
  int err_ = 0;
  Napi::Promise::Deferred deferred_;
};

// syncfs(fd) -> Promise<void>, on the libuv thread pool. fd must stay open until it settles.
Napi::Value Syncfs(const Napi::CallbackInfo& info) {
  auto* w = new SyncfsWorker(info.Env(), FdArg(info[0]));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

class CopyRangeWorker : public Napi::AsyncWorker {
 public:
  CopyRangeWorker(Napi::Env env, int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len)
      : Napi::AsyncWorker(env), fd_in_(fd_in), off_in_(off_in), fd_out_(fd_out), off_out_(off_out), len_(len), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    loff_t in = off_in_;
    loff_t out = off_out_;
    ssize_t n = ::copy_file_range(fd_in_, &in, fd_out_, &out, len_, 0);
    if (n < 0) err_ = errno;
    else copied_ = n;
  }
  void OnOK() override {
    if (err_ == 0) deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(copied_)));
    else deferred_.Reject(SysError(Env(), err_, "copy_file_range").Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_in_;
  loff_t off_in_;
  int fd_out_;
  loff_t off_out_;
  size_t len_;
  ssize_t copied_ = 0;
  int err_ = 0;
  Napi::Promise::Deferred deferred_;
};

// copyFileRange(fdIn, offIn, fdOut, offOut, len) -> Promise<bytes copied>, on the libuv thread
// pool (a copy may touch the disk for long). Both fds must stay open until it settles.
Napi::Value CopyFileRange(const Napi::CallbackInfo& info) {
  int64_t off_in = IntArg(info[1], "offIn");
  int64_t off_out = IntArg(info[3], "offOut");
  int64_t len = IntArg(info[4], "len");
  if (off_in < 0 || off_out < 0 || len < 0) throw Napi::RangeError::New(info.Env(), "copyFileRange: negative offset or length");
  auto* w = new CopyRangeWorker(info.Env(), FdArg(info[0]), off_in, FdArg(info[2]), off_out, static_cast<size_t>(len));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitPassthroughDir(Napi::Env env, Napi::Object exports) {
  exports.Set("ptGetdents", Napi::Function::New(env, Getdents, "ptGetdents"));
  exports.Set("ptSyncfs", Napi::Function::New(env, Syncfs, "ptSyncfs"));
  exports.Set("ptCopyFileRange", Napi::Function::New(env, CopyFileRange, "ptCopyFileRange"));
}

}  // namespace damselfly
