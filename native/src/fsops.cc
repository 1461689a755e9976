// File operations Node's fs module lacks: mknod (devices, fifos, sockets), utimensat with
// nanoseconds on links, the l*xattr family, lseek with SEEK_DATA/SEEK_HOLE, and the process's fd
// limit. All synchronous: metadata calls of the builder and unpacker and of a daemon's start,
// never on a serving hot path.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <vector>

#include "common.h"

namespace damselfly {
namespace {

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info[0], "path");
  auto mode = static_cast<mode_t>(IntArg(info[1], "mode"));
  auto major = static_cast<unsigned>(IntArg(info[2], "major"));
  auto minor = static_cast<unsigned>(IntArg(info[3], "minor"));
  if (::mknod(path.c_str(), mode, makedev(major, minor)) != 0) ThrowSys(info.Env(), "mknod", path);
  return info.Env().Undefined();
}

// utimensat(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): never follows a final symlink.
Napi::Value Lutimens(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info[0], "path");
  struct timespec ts[2];
  ts[0].tv_sec = static_cast<time_t>(IntArg(info[1], "atime seconds"));
  ts[0].tv_nsec = static_cast<long>(IntArg(info[2], "atime nanoseconds"));
  ts[1].tv_sec = static_cast<time_t>(IntArg(info[3], "mtime seconds"));
  ts[1].tv_nsec = static_cast<long>(IntArg(info[4], "mtime nanoseconds"));
  if (ts[0].tv_nsec < 0 || ts[0].tv_nsec > 999999999 || ts[1].tv_nsec < 0 || ts[1].tv_nsec > 999999999) {
    throw Napi::RangeError::New(info.Env(), "nanoseconds must be in [0, 1e9)");
  }
  if (::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(info.Env(), "utimensat", path);
  return info.Env().Undefined();
}

// Returns every xattr name of path (not following a final symlink) as raw bytes.
Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = PathArg(info[0], "path");
  std::vector<char> buf;
  for (;;) {
    ssize_t need = ::llistxattr(path.c_str(), nullptr, 0);
    if (need < 0) {
      if (errno == ENOTSUP) return Napi::Array::New(env);
      ThrowSys(env, "llistxattr", path);
    }
    buf.resize(static_cast<size_t>(need));
    ssize_t got = need == 0 ? 0 : ::llistxattr(path.c_str(), buf.data(), buf.size());
    if (got < 0 && errno == ERANGE) continue;  // grew between the two calls
    if (got < 0) ThrowSys(env, "llistxattr", path);
    buf.resize(static_cast<size_t>(got));
    break;
  }
  Napi::Array names = Napi::Array::New(env);
  uint32_t n = 0;
  size_t start = 0;
  for (size_t i = 0; i < buf.size(); i++) {
    if (buf[i] != '\0') continue;
    // SAFETY: [start, i) lies inside buf; i < buf.size().
    if (i > start) names.Set(n++, Napi::Buffer<char>::Copy(env, buf.data() + start, i - start));
    start = i + 1;
  }
  return names;
}

// Returns the value of one xattr, or null when it is absent.
Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = PathArg(info[0], "path");
  std::string name = PathArg(info[1], "name");
  std::vector<char> buf;
  for (;;) {
    ssize_t need = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (need < 0) {
      if (errno == ENODATA) return env.Null();
      ThrowSys(env, "lgetxattr", path);
    }
    buf.resize(static_cast<size_t>(need));
    ssize_t got = need == 0 ? 0 : ::lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) ThrowSys(env, "lgetxattr", path);
    return Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(got));
  }
}

Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info[0], "path");
  std::string name = PathArg(info[1], "name");
  if (!info[2].IsBuffer()) throw Napi::TypeError::New(info.Env(), "value must be a Buffer");
  auto value = info[2].As<Napi::Buffer<char>>();
  if (::lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), 0) != 0) {
    ThrowSys(info.Env(), "lsetxattr", path + " " + name);
  }
  return info.Env().Undefined();
}

// lseek(fd, offset, whence) for SEEK_DATA (3) / SEEK_HOLE (4): returns the offset, or -1 when
// there is no more data (ENXIO).
Napi::Value SeekData(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(IntArg(info[0], "fd"));
  off_t off = static_cast<off_t>(IntArg(info[1], "offset"));
  int whence = static_cast<int>(IntArg(info[2], "whence"));
  if (whence != SEEK_DATA && whence != SEEK_HOLE) throw Napi::RangeError::New(info.Env(), "whence must be SEEK_DATA or SEEK_HOLE");
  off_t r = ::lseek(fd, off, whence);
  if (r < 0) {
    if (errno == ENXIO) return Napi::Number::New(info.Env(), -1);
    ThrowSys(info.Env(), "lseek");
  }
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

// flock(fd, op): op is LOCK_SH (1), LOCK_EX (2) or LOCK_UN (8), optionally | LOCK_NB (4).
// Returns false when a non-blocking lock is held by someone else.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(IntArg(info[0], "fd"));
  int op = static_cast<int>(IntArg(info[1], "operation"));
  int r;
  do {
    r = ::flock(fd, op);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    ThrowSys(info.Env(), "flock");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// getrlimit(RLIMIT_NOFILE) as [soft, hard] (RLIM_INFINITY as -1).
Napi::Value GetNofileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct rlimit r;
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) ThrowSys(env, "getrlimit");
  auto num = [&](rlim_t v) { return Napi::Number::New(env, v == RLIM_INFINITY ? -1.0 : static_cast<double>(v)); };
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, num(r.rlim_cur));
  out.Set(1u, num(r.rlim_max));
  return out;
}

// setrlimit(RLIMIT_NOFILE, {soft, hard}); raising the hard limit takes CAP_SYS_RESOURCE (EPERM).
Napi::Value SetNofileLimit(const Napi::CallbackInfo& info) {
  struct rlimit r;
  r.rlim_cur = static_cast<rlim_t>(IntArg(info[0], "soft"));
  r.rlim_max = static_cast<rlim_t>(IntArg(info[1], "hard"));
  if (::setrlimit(RLIMIT_NOFILE, &r) != 0) ThrowSys(info.Env(), "setrlimit");
  return info.Env().Undefined();
}

}  // namespace

void InitFsOps(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("lutimens", Napi::Function::New(env, Lutimens, "lutimens"));
  exports.Set("llistxattr", Napi::Function::New(env, Llistxattr, "llistxattr"));
  exports.Set("lgetxattr", Napi::Function::New(env, Lgetxattr, "lgetxattr"));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr, "lsetxattr"));
  exports.Set("seekData", Napi::Function::New(env, SeekData, "seekData"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
  exports.Set("getNofileLimit", Napi::Function::New(env, GetNofileLimit, "getNofileLimit"));
  exports.Set("setNofileLimit", Napi::Function::New(env, SetNofileLimit, "setNofileLimit"));
}

}  // namespace damselfly
