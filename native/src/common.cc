#include "common.h"

#include <cmath>
#include <cstring>

namespace damselfly {

const char* ErrnoName(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
    E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR)
    E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS)
    E(EMLINK) E(EPIPE) E(ERANGE) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENODATA)
    E(EOVERFLOW) E(ENOTSUP) E(ECONNRESET) E(ECONNREFUSED) E(ENOTCONN) E(ETIMEDOUT) E(EADDRINUSE)
    E(ENOTSOCK) E(EPROTO) E(EBADMSG) E(ECANCELED) E(ENOTBLK) E(ETXTBSY) E(ESTALE)
#undef E
    default: return "EUNKNOWN";
  }
}

Napi::Error SysError(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  std::string msg = std::string(ErrnoName(err)) + ": " + std::strerror(err) + ", " + syscall;
  if (!detail.empty()) msg += " '" + detail + "'";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!detail.empty()) e.Set("path", Napi::String::New(env, detail));
  return e;
}

void ThrowSys(Napi::Env env, const char* syscall, const std::string& detail) {
  throw SysError(env, errno, syscall, detail);
}

std::string PathArg(const Napi::Value& v, const char* what) {
  std::string out;
  if (v.IsString()) {
    out = v.As<Napi::String>().Utf8Value();
  } else if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<char>>();
    out.assign(b.Data(), b.Length());
  } else {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a string or a Buffer");
  }
  // A NUL inside a path would silently truncate it at the syscall.
  if (out.find('\0') != std::string::npos) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must not contain NUL bytes");
  }
  return out;
}

int64_t IntArg(const Napi::Value& v, const char* what) {
  if (v.IsBigInt()) {
    bool lossless = false;
    int64_t x = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), std::string(what) + " is out of range");
    return x;
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) {
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be an integer below 2^53");
  }
  return static_cast<int64_t>(d);
}

Napi::Uint8Array U8Arg(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Uint8Array");
  }
  return v.As<Napi::Uint8Array>();
}

}  // namespace damselfly
