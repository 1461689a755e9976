// Creating syscalls of the passthrough filesystem, run as the requesting guest user: mkdirat,
// mknodat, symlinkat, openat2(O_CREAT | O_EXCL) and renameat2(RENAME_WHITEOUT), with
// setfsgid/setfsuid switched around each call (per-thread credentials) and back. The umask must be
// the request's (0 unless FUSE_DONT_MASK was agreed, the kernel having masked the mode already),
// and a umask is shared by every thread of the process. So:
//  - when the process umask takes no bit from the mode that the request's umask would not take
//    either (the usual case: a guest file 0644 or directory 0755 under a daemon umask of 022; a
//    symlink has no mode), the call runs on the calling thread, the process umask untouched;
//  - otherwise it runs on one dedicated thread that has its own fs_struct (unshare(CLONE_FS)), so
//    that its umask is private to it and never races the rest of the process.
// Handing a call to another thread costs two wake-ups, which on a busy host take longer than the
// system call itself. The JavaScript call waits for the result either way: the API stays synchronous.
// Supplementary groups the kernel vouches for (FUSE_CREATE_SUPP_GROUP: the parent directory's group,
// when the caller is a member through it), or none, are set for the call the same way, on the
// thread that runs it: the raw setgroups system call changes only the calling thread's credentials
// (glibc's wrapper would change every thread's).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <vector>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "common.h"

namespace damselfly {
namespace {

struct Creds {
  uint32_t uid;
  uint32_t gid;
  uint32_t umask;
  // Supplementary groups for the call (empty: none; a switched call never keeps the thread's own).
  std::vector<gid_t> groups;
};

// The calling thread's supplementary groups, as they are now (read at each switch: a list cached
// per thread went stale when the process changed its groups later).
std::vector<gid_t> CurrentGroups() {
  int n = ::getgroups(0, nullptr);
  std::vector<gid_t> g(n > 0 ? static_cast<size_t>(n) : 0);
  if (n > 0) g.resize(static_cast<size_t>(std::max(0, ::getgroups(n, g.data()))));
  return g;
}

// setgroups for the calling thread only (see the top of the file).
bool SetThreadGroups(const std::vector<gid_t>& g) {
  return ::syscall(SYS_setgroups, g.size(), g.empty() ? nullptr : g.data()) == 0;
}

// Switches the calling thread's fs ids and supplementary groups (the request's, or none) for one
// call of op, and back; returns op's result and sets *err to errno on failure.
long SwitchAndRun(const Creds& c, const std::function<long()>& op, int* err) {
  // The request's supplementary groups, or none: never the daemon's own, which it would otherwise
  // lend every guest user (a daemon with group G let a guest's uid 1000 create in a 0770 directory
  // of G, keeping its setgid bit; the C virtiofsd drops its groups at start for this,
  // CVE-2022-0358). Should putting them back fail, the next call finds what is left and replaces
  // it all the same.
  const std::vector<gid_t> own = CurrentGroups();
  const bool groups = !c.groups.empty() || !own.empty();
  if (groups && !SetThreadGroups(c.groups)) {
    *err = errno;
    return -1;
  }
  // setfsgid first: the gid may only change while the thread still has its capabilities.
  auto old_gid = static_cast<gid_t>(::setfsgid(c.gid));
  auto old_uid = static_cast<uid_t>(::setfsuid(c.uid));
  // setfs[ug]id report no errors: read the ids back (an invalid id changes nothing).
  bool ok = static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) == c.uid &&
            static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) == c.gid;
  long r = -1;
  *err = EPERM;
  if (ok) {
    errno = 0;
    r = op();
    *err = r < 0 ? errno : 0;
  }
  ::setfsuid(old_uid);
  ::setfsgid(old_gid);
  if (groups) SetThreadGroups(own);
  return r;
}

// One worker thread, started on first use and never stopped (it is leaked on purpose: a joinable
// std::thread destroyed at exit would terminate the process).
class CredThread {
 public:
  static CredThread& Get() {
    static CredThread* instance = new CredThread();
    return *instance;
  }

  // Runs op with the credentials and umask; returns its result and sets *err to errno on failure.
  long Run(const Creds& creds, const std::function<long()>& op, int* err) {
    std::lock_guard<std::mutex> caller(callers_);
    std::unique_lock<std::mutex> lock(mu_);
    job_ = [&]() { return Switched(creds, op, err); };
    pending_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !pending_; });
    return result_;
  }

 private:
  CredThread() { std::thread([this] { Loop(); }).detach(); }

  void Loop() {
    setup_errno_ = ::unshare(CLONE_FS) == 0 ? 0 : errno;
    ::umask(0);
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return pending_; });
      result_ = job_();
      pending_ = false;
      cv_.notify_all();
    }
  }

  long Switched(const Creds& c, const std::function<long()>& op, int* err) {
    if (setup_errno_ != 0) {
      *err = setup_errno_;
      return -1;
    }
    ::umask(static_cast<mode_t>(c.umask & 07777));
    long r = SwitchAndRun(c, op, err);
    ::umask(0);
    return r;
  }

  std::mutex callers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<long()> job_;
  bool pending_ = false;
  long result_ = 0;
  int setup_errno_ = 0;
};

// The calling thread's fs ids, read once per thread: SwitchedHere always puts them back.
struct FsIds {
  uid_t uid;
  gid_t gid;
};

const FsIds& ThreadFsIds() {
  // setfs[ug]id(-1) changes nothing and returns the current id.
  thread_local const FsIds ids{static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))), static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1)))};
  return ids;
}

// Switches the calling thread's fs ids for one call; the umask is left as it is. A caller whose
// ids are the thread's already (a guest's root, with a daemon running as root) and who brings no
// supplementary groups needs no switch: six system calls fewer for each file it creates.
long SwitchedHere(const Creds& c, const std::function<long()>& op, int* err) {
  const FsIds& own = ThreadFsIds();
  if (c.uid == own.uid && c.gid == own.gid && c.groups.empty()) {
    errno = 0;
    long r = op();
    *err = r < 0 ? errno : 0;
    return r;
  }
  return SwitchAndRun(c, op, err);
}

// The calling thread's umask, from /proc/thread-self/status (Linux 4.7+; reading it with umask(2)
// would change it for a moment, for every thread sharing it); -1 when it cannot be read.
int ReadThreadUmask() {
  int fd = ::open("/proc/thread-self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[2048];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* at = std::strstr(buf, "\nUmask:");
  unsigned v = 0;
  if (at == nullptr || std::sscanf(at + 7, " %o", &v) != 1) return -1;
  return static_cast<int>(v & 0777);
}

// The process umask as last read (-2: not yet). Reading the status file costs more than the
// creating call itself on a memory file system (vhost-requests.ts: CREATE 57-68 us of daemon CPU
// with a read each time, 44-59 us without, virtiofsd 17-26 us), and the umask rarely changes
// (nothing in Damselfly changes it): it is read once, and again when a node comes out with other
// permissions than it predicts (see RunAs).
std::atomic<int> g_umask{-2};

int ProcessUmask() {
  int v = g_umask.load(std::memory_order_relaxed);
  if (v == -2) g_umask.store(v = ReadThreadUmask(), std::memory_order_relaxed);
  return v;
}

// What RunAs needs to check a node made on the calling thread: its permission bits (-1: unknown),
// and how to remove it again. `made` is op's result (an fd for a create).
struct Made {
  std::function<int(long made)> perms;
  std::function<void(long made)> undo;
};

int PermsAt(int dirfd, const std::string& name) {
  struct stat st;
  return ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
}

// Runs op as the request's user: here when the process umask gives the same mode as the request's
// umask would (see the top of the file), else on the credential thread. The umask read last is
// checked both ways: before the credential thread is chosen it is read again; a node made here
// with other permission bits than predicted means it changed since it was read: it is read again
// and, if it did change, the node is removed and made again on the credential thread. (Bits that
// differ while the umask is the same come from elsewhere, a default ACL: the node stays.)
long RunAs(const Creds& c, mode_t mode, const std::function<long()>& op, const Made* made, int* err) {
  // A mode without permission bits (a whiteout, a symlink) cannot be changed by any umask.
  if ((mode & 0777) == 0) return SwitchedHere(c, op, err);
  auto here = [&](int umask) { return umask >= 0 && (mode & static_cast<mode_t>(umask)) == (mode & c.umask & 0777); };
  int own = ProcessUmask();
  if (!here(own)) {
    // Before two thread hand-offs, make sure the umask read last is still the process's.
    int now = ReadThreadUmask();
    if (now != own) g_umask.store(own = now, std::memory_order_relaxed);
  }
  if (here(own)) {
    long r = SwitchedHere(c, op, err);
    if (r < 0 || made == nullptr) return r;
    int perms = made->perms(r);
    if (perms < 0 || static_cast<mode_t>(perms) == (mode & ~c.umask & 0777)) return r;
    int now = ReadThreadUmask();
    if (now == own) return r;
    g_umask.store(now, std::memory_order_relaxed);
    made->undo(r);
  }
  return CredThread::Get().Run(c, op, err);
}

// Optional supplementary groups: an array of gids (at most 64), or undefined for none.
std::vector<gid_t> GroupsArg(const Napi::Value& v) {
  std::vector<gid_t> out;
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "groups must be an array of gids");
  auto a = v.As<Napi::Array>();
  if (a.Length() > 64) throw Napi::RangeError::New(v.Env(), "more than 64 supplementary groups");
  for (uint32_t i = 0; i < a.Length(); i++) {
    int64_t g = IntArg(a.Get(i), "gid");
    if (g < 0 || g > 0xfffffffe) throw Napi::RangeError::New(v.Env(), "gid out of range");
    out.push_back(static_cast<gid_t>(g));
  }
  return out;
}

// uid, gid, umask and (optional) supplementary groups, from argument `at` on.
Creds CredArgs(const Napi::CallbackInfo& info, size_t at) {
  return Creds{static_cast<uint32_t>(IntArg(info[at], "uid")), static_cast<uint32_t>(IntArg(info[at + 1], "gid")),
               static_cast<uint32_t>(IntArg(info[at + 2], "umask")), GroupsArg(info[at + 3])};
}

int DirArg(const Napi::Value& v) {
  int64_t x = IntArg(v, "dirfd");
  if (x < 0 || x > 0x7fffffff) throw Napi::RangeError::New(v.Env(), "dirfd is not a file descriptor");
  return static_cast<int>(x);
}

long RunOrThrow(Napi::Env env, const Creds& c, mode_t mode, const std::function<long()>& op, const Made* made, const char* syscall, const std::string& name) {
  int err = 0;
  long r = RunAs(c, mode, op, made, &err);
  if (r < 0) throw SysError(env, err, syscall, name);
  return r;
}

// mkdirat(dirfd, name, mode, uid, gid, umask, groups?)
Napi::Value Mkdirat(const Napi::CallbackInfo& info) {
  int dirfd = DirArg(info[0]);
  std::string name = PathArg(info[1], "name");
  auto mode = static_cast<mode_t>(IntArg(info[2], "mode"));
  Made made{[&](long) { return PermsAt(dirfd, name); }, [&](long) { ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR); }};
  RunOrThrow(info.Env(), CredArgs(info, 3), mode, [&] { return static_cast<long>(::mkdirat(dirfd, name.c_str(), mode)); }, &made, "mkdirat", name);
  return info.Env().Undefined();
}

// mknodat(dirfd, name, mode, rdev, uid, gid, umask, groups?); rdev in the FUSE (new_encode_dev) encoding,
// which glibc's dev_t reads the same for 32-bit values.
Napi::Value Mknodat(const Napi::CallbackInfo& info) {
  int dirfd = DirArg(info[0]);
  std::string name = PathArg(info[1], "name");
  auto mode = static_cast<mode_t>(IntArg(info[2], "mode"));
  auto rdev = static_cast<dev_t>(IntArg(info[3], "rdev"));
  Made made{[&](long) { return PermsAt(dirfd, name); }, [&](long) { ::unlinkat(dirfd, name.c_str(), 0); }};
  RunOrThrow(info.Env(), CredArgs(info, 4), mode, [&] { return static_cast<long>(::mknodat(dirfd, name.c_str(), mode, rdev)); }, &made, "mknodat", name);
  return info.Env().Undefined();
}

// symlinkat(target, dirfd, name, uid, gid, umask, groups?): the target is stored as data, never
// resolved; a symlink has no mode for the umask to take from.
Napi::Value Symlinkat(const Napi::CallbackInfo& info) {
  std::string target = PathArg(info[0], "target");
  int dirfd = DirArg(info[1]);
  std::string name = PathArg(info[2], "name");
  Creds c = CredArgs(info, 3);
  RunOrThrow(info.Env(), c, 0, [&] { return static_cast<long>(::symlinkat(target.c_str(), dirfd, name.c_str())); }, nullptr, "symlinkat", name);
  return info.Env().Undefined();
}

// create(dirfd, name, flags, mode, resolve, uid, gid, umask, groups?) -> fd: openat2 with O_CREAT | O_EXCL |
// O_NOFOLLOW | O_CLOEXEC added (a new file only; the caller handles an existing one).
Napi::Value Create(const Napi::CallbackInfo& info) {
  int dirfd = DirArg(info[0]);
  std::string name = PathArg(info[1], "name");
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(IntArg(info[2], "flags")) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  how.mode = static_cast<uint64_t>(IntArg(info[3], "mode")) & 07777;
  how.resolve = static_cast<uint64_t>(IntArg(info[4], "resolve"));
  Made made{[](long fd) {
              struct stat st;
              return ::fstat(static_cast<int>(fd), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
            },
            [&](long fd) {
              ::close(static_cast<int>(fd));
              ::unlinkat(dirfd, name.c_str(), 0);
            }};
  long fd = RunOrThrow(info.Env(), CredArgs(info, 5), static_cast<mode_t>(how.mode), [&] { return ::syscall(SYS_openat2, dirfd, name.c_str(), &how, sizeof how); }, &made, "openat2", name);
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

// tmpfile(dirfd, flags, mode, uid, gid, umask, groups?) -> fd: an unnamed file in the directory (openat2 of
// "." with O_TMPFILE | O_CLOEXEC added), owned by the request's user; O_EXCL in flags keeps it from
// ever being linked in.
Napi::Value Tmpfile(const Napi::CallbackInfo& info) {
  int dirfd = DirArg(info[0]);
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(IntArg(info[1], "flags")) | O_TMPFILE | O_CLOEXEC;
  how.mode = static_cast<uint64_t>(IntArg(info[2], "mode")) & 07777;
  how.resolve = RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH;
  Made made{[](long fd) {
              struct stat st;
              return ::fstat(static_cast<int>(fd), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
            },
            [](long fd) { ::close(static_cast<int>(fd)); }};
  long fd = RunOrThrow(info.Env(), CredArgs(info, 3), static_cast<mode_t>(how.mode), [&] { return ::syscall(SYS_openat2, dirfd, ".", &how, sizeof how); }, &made, "openat2", "O_TMPFILE");
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

// renameat2(olddirfd, oldname, newdirfd, newname, flags, uid, gid, umask, groups?) as the request's
// user: the whiteout RENAME_WHITEOUT leaves at the old name is made by whoever renames, as a mknod
// of one is (the umask has nothing to take from a whiteout's mode 0).
Napi::Value Renameat2As(const Napi::CallbackInfo& info) {
  int olddir = DirArg(info[0]);
  std::string oldname = PathArg(info[1], "oldname");
  int newdir = DirArg(info[2]);
  std::string newname = PathArg(info[3], "newname");
  auto flags = static_cast<unsigned>(IntArg(info[4], "flags"));
  RunOrThrow(info.Env(), CredArgs(info, 5), 0, [&] { return ::syscall(SYS_renameat2, olddir, oldname.c_str(), newdir, newname.c_str(), flags); }, nullptr, "renameat2", oldname);
  return info.Env().Undefined();
}

}  // namespace

void InitPassthroughCreate(Napi::Env env, Napi::Object exports) {
  exports.Set("ptMkdirat", Napi::Function::New(env, Mkdirat, "ptMkdirat"));
  exports.Set("ptMknodat", Napi::Function::New(env, Mknodat, "ptMknodat"));
  exports.Set("ptSymlinkat", Napi::Function::New(env, Symlinkat, "ptSymlinkat"));
  exports.Set("ptCreate", Napi::Function::New(env, Create, "ptCreate"));
  exports.Set("ptTmpfile", Napi::Function::New(env, Tmpfile, "ptTmpfile"));
  exports.Set("ptRenameat2As", Napi::Function::New(env, Renameat2As, "ptRenameat2As"));
}

}  // namespace damselfly
