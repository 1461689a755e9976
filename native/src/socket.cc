// Unix sockets with file-descriptor passing (SCM_RIGHTS) for vhost-user, plus eventfd and memfd
// helpers. All sockets are non-blocking; readiness comes from a Poller. No protocol here.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common.h"

namespace damselfly {
namespace {

// vhost-user allows up to 32 fds on one message (rust-vmm MAX_ATTACHED_FD_ENTRIES); accept a few more
// so that a frontend sending too many is seen (and its extra fds closed) rather than truncated silently.
constexpr int kMaxFds = 64;

int SetNonBlock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -1;
  return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

sockaddr_un UnixAddress(Napi::Env env, const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) throw Napi::RangeError::New(env, "socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  // SAFETY: path.size() + 1 <= sizeof(sun_path), checked above.
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A non-blocking socket of `type` bound at path (an existing socket file replaced), listening
// with `backlog` when that is positive.
int BoundUnix(Napi::Env env, const std::string& path, int type, int backlog) {
  sockaddr_un addr = UnixAddress(env, path);
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowSys(env, "socket");
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || (backlog > 0 && ::listen(fd, backlog) != 0)) {
    int e = errno;
    ::close(fd);
    throw SysError(env, e, "bind", path);
  }
  return fd;
}

// listenUnix(path, backlog) -> fd: a non-blocking listening socket; an existing socket file is replaced.
Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info[0], "path");
  int backlog = info.Length() > 1 ? static_cast<int>(IntArg(info[1], "backlog")) : 1;
  return Napi::Number::New(info.Env(), BoundUnix(info.Env(), path, SOCK_STREAM, backlog < 1 ? 1 : backlog));
}

// connectUnix(path, datagram?, noWait?) -> fd, non-blocking once connected: the test frontend's
// side, or (datagram) the syslog socket. With noWait the connect itself does not block: -1 when
// the listener's queue is full (EAGAIN: a Unix socket's connect is not left in progress), for the
// caller to try again under its own deadline (a supervisor that listens but never accepts must
// not stop the daemon's event loop).
Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = PathArg(info[0], "path");
  bool datagram = info.Length() > 1 && info[1].ToBoolean().Value();
  bool noWait = info.Length() > 2 && info[2].ToBoolean().Value();
  sockaddr_un addr = UnixAddress(env, path);
  int fd = ::socket(AF_UNIX, (datagram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | (noWait ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) ThrowSys(env, "socket");
  int r;
  do {
    r = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (r != 0 && errno == EINTR && !noWait);
  if (r != 0) {
    int e = errno;
    ::close(fd);
    if (noWait && (e == EAGAIN || e == EINPROGRESS || e == EINTR)) return Napi::Number::New(env, -1);
    throw SysError(env, e, "connect", path);
  }
  SetNonBlock(fd);
  return Napi::Number::New(env, fd);
}

// bindUnixDatagram(path) -> fd: a non-blocking datagram socket bound at path (a syslog daemon's
// side, for tests); an existing socket file is replaced.
Napi::Value BindUnixDatagram(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), BoundUnix(info.Env(), PathArg(info[0], "path"), SOCK_DGRAM, 0));
}

// accept(listenFd) -> fd, or -1 when no connection is pending.
Napi::Value Accept(const Napi::CallbackInfo& info) {
  int lfd = static_cast<int>(IntArg(info[0], "fd"));
  int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Napi::Number::New(info.Env(), -1);
    ThrowSys(info.Env(), "accept4");
  }
  return Napi::Number::New(info.Env(), fd);
}

// recvMsg(fd, maxBytes) -> {data: Buffer, fds: number[]} ; data is empty at end of stream;
// returns null when nothing is available (EAGAIN).
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntArg(info[0], "fd"));
  size_t max = static_cast<size_t>(IntArg(info[1], "maxBytes"));
  if (max == 0 || max > (64u << 20)) throw Napi::RangeError::New(env, "maxBytes out of range");
  std::vector<char> buf(max);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowSys(env, "recvmsg");
  }
  Napi::Array fds = Napi::Array::New(env);
  uint32_t nfds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int f;
      // SAFETY: i < count, and count ints fit in this cmsg's data by its own cmsg_len.
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.Set(nfds++, Napi::Number::New(env, f));
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("data", Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(n)));
  out.Set("fds", fds);
  out.Set("truncatedFds", Napi::Boolean::New(env, (msg.msg_flags & MSG_CTRUNC) != 0));
  return out;
}

// sendMsg(fd, data, fds?) -> bytes sent (all of data, or a short count if the socket is full).
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntArg(info[0], "fd"));
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "data must be a Buffer");
  auto data = info[1].As<Napi::Buffer<char>>();
  std::vector<int> fds;
  if (info.Length() > 2 && info[2].IsArray()) {
    auto arr = info[2].As<Napi::Array>();
    if (arr.Length() > static_cast<uint32_t>(kMaxFds)) throw Napi::RangeError::New(env, "too many fds");
    for (uint32_t i = 0; i < arr.Length(); i++) fds.push_back(static_cast<int>(IntArg(arr.Get(i), "fd")));
  }
  iovec iov{data.Data(), data.Length()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    // SAFETY: control holds CMSG_SPACE for kMaxFds ints and fds.size() <= kMaxFds.
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
    ThrowSys(env, "sendmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(IntArg(info[0], "fd"));
  if (SetNonBlock(fd) != 0) ThrowSys(info.Env(), "fcntl");
  return info.Env().Undefined();
}

// eventfd(initval, nonblock) -> fd
Napi::Value EventFd(const Napi::CallbackInfo& info) {
  unsigned init = info.Length() > 0 ? static_cast<unsigned>(IntArg(info[0], "initval")) : 0;
  int fd = ::eventfd(init, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) ThrowSys(info.Env(), "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// eventfdSignal(fd) -> 0, or -errno (EAGAIN: the counter is full, so the peer is signalled anyway):
// adds 1 to an eventfd's counter, as a vhost-user backend signals a used buffer. The error is the
// result, not an exception: the caller logs it, and this runs after every batch of replies.
Napi::Value EventFdSignal(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(IntArg(info[0], "fd"));
  uint64_t one = 1;
  ssize_t n = ::write(fd, &one, sizeof one);
  return Napi::Number::New(info.Env(), n == static_cast<ssize_t>(sizeof one) ? 0 : n < 0 ? -errno : -EIO);
}

// memfd(name, size) -> fd: anonymous shared memory (the test frontend's "guest RAM").
Napi::Value MemFd(const Napi::CallbackInfo& info) {
  std::string name = PathArg(info[0], "name");
  off_t size = static_cast<off_t>(IntArg(info[1], "size"));
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) ThrowSys(info.Env(), "memfd_create");
  if (::ftruncate(fd, size) != 0) {
    int e = errno;
    ::close(fd);
    throw SysError(info.Env(), e, "ftruncate");
  }
  return Napi::Number::New(info.Env(), fd);
}

// closeFd(fd): close(2), ignoring EBADF (an fd closed twice is a bug we do not want to crash on).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(IntArg(info[0], "fd"));
  if (fd >= 0) ::close(fd);
  return info.Env().Undefined();
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix, "listenUnix"));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix, "connectUnix"));
  exports.Set("bindUnixDatagram", Napi::Function::New(env, BindUnixDatagram, "bindUnixDatagram"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg, "recvMsg"));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg, "sendMsg"));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking, "setNonBlocking"));
  exports.Set("eventfd", Napi::Function::New(env, EventFd, "eventfd"));
  exports.Set("eventfdSignal", Napi::Function::New(env, EventFdSignal, "eventfdSignal"));
  exports.Set("memfd", Napi::Function::New(env, MemFd, "memfd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace damselfly
