// Extended attributes of passthrough inodes held as O_PATH fds. The f*xattr calls refuse O_PATH
// fds, and opening a device or a FIFO to get a real fd is not safe, so every call goes through the
// path /proc/self/fd/N with the following variants: the magic link lands on the inode itself (a
// symlink included) and nothing further is followed. Errors (ENODATA, ERANGE, ENOTSUP, EPERM) pass
// through unchanged.
#include <sys/xattr.h>

#include <climits>
#include <string>
#include <vector>

#include "common.h"

namespace damselfly {
namespace {

std::string ProcFdArg(const Napi::Value& v) {
  int64_t fd = IntArg(v, "fd");
  if (fd < 0 || fd > INT_MAX) throw Napi::RangeError::New(v.Env(), "fd is not a file descriptor");
  return "/proc/self/fd/" + std::to_string(fd);
}

// getxattr(fd, name) -> Buffer with the whole value (probed, retried if it grew meanwhile).
Napi::Value Getxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ProcFdArg(info[0]);
  std::string name = PathArg(info[1], "name");
  std::vector<char> buf;
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t need = ::getxattr(path.c_str(), name.c_str(), nullptr, 0);
    // With errnoResult, a missing attribute is -ENODATA, not an exception: the kernel asks for
    // security.capability before writes, and most files have none.
    if (need < 0 && errno == ENODATA && info.Length() > 2 && info[2].ToBoolean().Value()) return Napi::Number::New(env, -ENODATA);
    if (need < 0) ThrowSys(env, "getxattr", name);
    buf.resize(static_cast<size_t>(need) + 1);
    // SAFETY: buf holds need + 1 bytes; getxattr writes at most buf.size().
    ssize_t got = ::getxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) ThrowSys(env, "getxattr", name);
    return Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(got));
  }
  throw SysError(env, ERANGE, "getxattr", name);
}

// listxattr(fd) -> Buffer of NUL-terminated names, as the syscall returns them.
Napi::Value Listxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ProcFdArg(info[0]);
  std::vector<char> buf;
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t need = ::listxattr(path.c_str(), nullptr, 0);
    if (need < 0) ThrowSys(env, "listxattr");
    buf.resize(static_cast<size_t>(need) + 1);
    // SAFETY: buf holds need + 1 bytes; listxattr writes at most buf.size().
    ssize_t got = ::listxattr(path.c_str(), buf.data(), buf.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) ThrowSys(env, "listxattr");
    return Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(got));
  }
  throw SysError(env, ERANGE, "listxattr");
}

// setxattr(fd, name, value, flags); flags XATTR_CREATE (1) / XATTR_REPLACE (2).
Napi::Value Setxattr(const Napi::CallbackInfo& info) {
  std::string path = ProcFdArg(info[0]);
  std::string name = PathArg(info[1], "name");
  if (!info[2].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "value must be a Uint8Array");
  auto value = info[2].As<Napi::Uint8Array>();
  int flags = static_cast<int>(IntArg(info[3], "flags"));
  // SAFETY: value.Data() points at value.ByteLength() bytes of the typed array.
  if (::setxattr(path.c_str(), name.c_str(), value.Data(), value.ByteLength(), flags) != 0) {
    ThrowSys(info.Env(), "setxattr", name);
  }
  return info.Env().Undefined();
}

Napi::Value Removexattr(const Napi::CallbackInfo& info) {
  std::string path = ProcFdArg(info[0]);
  std::string name = PathArg(info[1], "name");
  if (::removexattr(path.c_str(), name.c_str()) != 0) ThrowSys(info.Env(), "removexattr", name);
  return info.Env().Undefined();
}

}  // namespace

void InitPassthroughXattr(Napi::Env env, Napi::Object exports) {
  exports.Set("ptGetxattr", Napi::Function::New(env, Getxattr, "ptGetxattr"));
  exports.Set("ptListxattr", Napi::Function::New(env, Listxattr, "ptListxattr"));
  exports.Set("ptSetxattr", Napi::Function::New(env, Setxattr, "ptSetxattr"));
  exports.Set("ptRemovexattr", Napi::Function::New(env, Removexattr, "ptRemovexattr"));
}

}  // namespace damselfly
