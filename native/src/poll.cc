// Event-loop integration: a uv_poll watcher that calls JavaScript when a file descriptor becomes
// readable (or writable), plus the mount(2)/umount2(2) calls the /dev/fuse transport needs.
// The fd itself is owned by the caller; the watcher never reads or closes it.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>
#include <uv.h>

#include <memory>

#include "common.h"

namespace damselfly {
namespace {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {InstanceMethod("start", &Poller::Start), InstanceMethod("stop", &Poller::Stop),
                        InstanceMethod("close", &Poller::Close)});
  }

  // new Poller(fd, callback(events: number), drainEventfd?: boolean)
  // With drainEventfd the fd is an eventfd whose counter is read (reset) before each readable
  // callback: a vhost-user kick then costs no separate read call from JavaScript.
  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    fd_ = static_cast<int>(IntArg(info[0], "fd"));
    drain_ = info.Length() > 2 && info[2].ToBoolean().Value();
    if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "callback must be a function");
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "damselfly.Poller");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd_);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      throw SysError(env, -r, "uv_poll_init");
    }
    handle_->data = this;
  }

  ~Poller() override {
    // Close() should have run; if the object is collected first, close the handle anyway.
    if (handle_ != nullptr) {
      handle_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      handle_ = nullptr;
    }
  }

 private:
  static void OnEvent(uv_poll_t* h, int status, int events) {
    auto* self = static_cast<Poller*>(h->data);
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // A negative status is passed on as a negative number: the caller decides what it means.
    int value = status < 0 ? status : events;
    if (value > 0 && (events & UV_READABLE) != 0 && self->drain_) {
      uint64_t counter = 0;
      // EAGAIN: another reader took the count first; nothing is lost, the callback still runs.
      if (::read(self->fd_, &counter, sizeof counter) < 0 && errno != EAGAIN && errno != EINTR) value = -errno;
    }
    // MakeCallback, as Node's own handles do: on return it runs the microtasks and nextTicks the
    // callback queued (promise continuations that send replies) before the loop goes on.
    try {
      self->callback_.MakeCallback(env.Global(), {Napi::Number::New(env, value)}, *self->context_);
    } catch (const Napi::Error& e) {
      // An exception must not unwind into libuv (that aborts the process): hand it to Node as an
      // uncaught exception, which logs it and ends the process cleanly (or a handler takes it).
      napi_fatal_exception(env, e.Value());
    }
  }

  // start(events): 1 = readable, 2 = writable (UV_READABLE / UV_WRITABLE).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (handle_ == nullptr) throw Napi::Error::New(info.Env(), "poller is closed");
    int events = static_cast<int>(IntArg(info[0], "events"));
    int r = uv_poll_start(handle_, events, OnEvent);
    if (r != 0) throw SysError(info.Env(), -r, "uv_poll_start");
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) {
      uv_poll_stop(handle_);
      handle_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      handle_ = nullptr;
    }
    callback_.Reset();
    return info.Env().Undefined();
  }

  int fd_ = -1;
  bool drain_ = false;
  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

// mount(source, target, fstype, flags, data)
Napi::Value Mount(const Napi::CallbackInfo& info) {
  std::string source = PathArg(info[0], "source");
  std::string target = PathArg(info[1], "target");
  std::string fstype = PathArg(info[2], "fstype");
  auto flags = static_cast<unsigned long>(IntArg(info[3], "flags"));
  std::string data = PathArg(info[4], "data");
  if (::mount(source.c_str(), target.c_str(), fstype.c_str(), flags, data.c_str()) != 0) {
    ThrowSys(info.Env(), "mount", target);
  }
  return info.Env().Undefined();
}

// umount2(target, flags)
Napi::Value Umount2(const Napi::CallbackInfo& info) {
  std::string target = PathArg(info[0], "target");
  int flags = static_cast<int>(IntArg(info[1], "flags"));
  if (::umount2(target.c_str(), flags) != 0) ThrowSys(info.Env(), "umount2", target);
  return info.Env().Undefined();
}

// openCloexec(path, flags): open(2) with O_CLOEXEC; returns the fd.
Napi::Value OpenFd(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info[0], "path");
  int flags = static_cast<int>(IntArg(info[1], "flags"));
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) ThrowSys(info.Env(), "open", path);
  return Napi::Number::New(info.Env(), fd);
}

}  // namespace

void InitPoll(Napi::Env env, Napi::Object exports) {
  exports.Set("Poller", Poller::Define(env));
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount2, "umount2"));
  exports.Set("openFd", Napi::Function::New(env, OpenFd, "openFd"));
}

}  // namespace damselfly
