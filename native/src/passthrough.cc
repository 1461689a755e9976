// Primitives of the passthrough filesystem (src/fs/passthrough): every name is one path component
// resolved relative to a directory fd, by openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) or by an
// *at call that never follows a final symlink. O_PATH fds are used for I/O only after a reopen
// through /proc/self/fd/N (the magic link lands on the inode itself and is never followed further).
// Synchronous and policy-free: name validation and permissions live in TypeScript.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <string>

#include "common.h"

#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif

namespace damselfly {
namespace {

int FdArg(const Napi::Value& v, const char* what) {
  int64_t x = IntArg(v, what);
  if (x < 0 || x > INT_MAX) throw Napi::RangeError::New(v.Env(), std::string(what) + " is not a file descriptor");
  return static_cast<int>(x);
}

std::string ProcFd(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// The FUSE (and kernel new_encode_dev) 32-bit encoding of a device number.
uint32_t FuseDev(uint32_t major, uint32_t minor) {
  return (minor & 0xffU) | (major << 8) | ((minor & ~0xffU) << 12);
}

// openat2(dirfd, name, flags, mode, resolve[, errnoResult]) -> fd (or -errno with errnoResult).
// O_CLOEXEC is always added; mode must be 0 unless O_CREAT or O_TMPFILE is given (as openat2
// requires).
Napi::Value Openat2(const Napi::CallbackInfo& info) {
  int dirfd = FdArg(info[0], "dirfd");
  std::string name = PathArg(info[1], "name");
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(IntArg(info[2], "flags")) | O_CLOEXEC;
  how.mode = static_cast<uint64_t>(IntArg(info[3], "mode"));
  how.resolve = static_cast<uint64_t>(IntArg(info[4], "resolve"));
  long fd = -1;
  // A RESOLVE_BENEATH walk fails with EAGAIN when a rename raced it, and with EXDEV when the name
  // was moved out of dirfd before the walk ended: retry a few times (the caller decides after).
  for (int attempt = 0; attempt < 16; attempt++) {
    fd = ::syscall(SYS_openat2, dirfd, name.c_str(), &how, sizeof how);
    if (fd >= 0 || (errno != EAGAIN && errno != EXDEV)) break;
  }
  if (fd < 0) {
    // With errnoResult, -errno is the result: a negative lookup (every file a guest creates starts
    // with one) then costs no exception, which through N-API costs several times the system call.
    if (info.Length() > 5 && info[5].ToBoolean().Value()) return Napi::Number::New(info.Env(), -errno);
    ThrowSys(info.Env(), "openat2", name);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

// Reopens an fd (typically O_PATH) through /proc/self/fd/N with new flags -> a new fd.
Napi::Value Reopen(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  int flags = static_cast<int>(IntArg(info[1], "flags")) & ~(O_NOFOLLOW | O_CREAT | O_EXCL);
  int nfd = ::open(ProcFd(fd).c_str(), flags | O_CLOEXEC);
  if (nfd < 0) ThrowSys(info.Env(), "open", ProcFd(fd));
  return Napi::Number::New(info.Env(), nfd);
}

// statxInto(fd, name, flags, out): the attributes FUSE needs plus the mount id, written into `out`
// (a Float64Array of kStatxSlots; slot 0 holds the 64-bit inode number's bits, read through a
// BigUint64Array over the same memory). A lookup or GETATTR makes several statx calls: filling a
// typed array costs far less than building an object of 17 properties through N-API.
constexpr size_t kStatxSlots = 17;

Napi::Value StatxInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  std::string name = PathArg(info[1], "name");
  int flags = static_cast<int>(IntArg(info[2], "flags"));
  if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[3].As<Napi::Float64Array>().ElementLength() < kStatxSlots) {
    throw Napi::TypeError::New(env, "out must be a Float64Array of at least 17 elements");
  }
  double* out = info[3].As<Napi::Float64Array>().Data();
  struct statx st;
  if (::statx(fd, name.c_str(), flags | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS | STATX_MNT_ID, &st) != 0) {
    ThrowSys(env, "statx", name);
  }
  uint64_t ino = st.stx_ino;
  std::memcpy(&out[0], &ino, sizeof ino);
  out[1] = static_cast<double>(makedev(st.stx_dev_major, st.stx_dev_minor));
  out[2] = (st.stx_mask & STATX_MNT_ID) ? static_cast<double>(st.stx_mnt_id) : 0;
  out[3] = st.stx_mode;
  out[4] = st.stx_nlink;
  out[5] = st.stx_uid;
  out[6] = st.stx_gid;
  out[7] = FuseDev(st.stx_rdev_major, st.stx_rdev_minor);
  out[8] = static_cast<double>(st.stx_size);
  out[9] = static_cast<double>(st.stx_blocks);
  out[10] = st.stx_blksize;
  out[11] = static_cast<double>(st.stx_atime.tv_sec);
  out[12] = st.stx_atime.tv_nsec;
  out[13] = static_cast<double>(st.stx_mtime.tv_sec);
  out[14] = st.stx_mtime.tv_nsec;
  out[15] = static_cast<double>(st.stx_ctime.tv_sec);
  out[16] = st.stx_ctime.tv_nsec;
  return env.Undefined();
}

// O_PATH fd of the parent of directory `fd`, or -1 when that parent is not at or below `rootfd`
// (the directory was moved out of the shared tree). Walks up by ".." comparing (dev, ino).
Napi::Value OpenParentBeneath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  int rootfd = FdArg(info[1], "rootfd");
  struct stat root, cur, up;
  if (::fstat(rootfd, &root) != 0) ThrowSys(env, "fstat");
  int parent = ::openat(fd, "..", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (parent < 0) ThrowSys(env, "openat", "..");
  int walk = ::dup(parent);
  for (int depth = 0; walk >= 0 && depth < 4096; depth++) {
    if (::fstat(walk, &cur) != 0) break;
    if (cur.st_dev == root.st_dev && cur.st_ino == root.st_ino) {
      ::close(walk);
      return Napi::Number::New(env, parent);
    }
    int next = ::openat(walk, "..", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    bool top = next < 0 || ::fstat(next, &up) != 0 || (up.st_dev == cur.st_dev && up.st_ino == cur.st_ino);
    ::close(walk);
    walk = next;
    if (top) break;  // reached the host's root without meeting the shared directory
  }
  if (walk >= 0) ::close(walk);
  ::close(parent);
  return Napi::Number::New(env, -1);
}

Napi::Value Readlink(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  char buf[PATH_MAX];
  ssize_t n = ::readlinkat(fd, "", buf, sizeof buf);
  if (n < 0) ThrowSys(info.Env(), "readlinkat");
  // SAFETY: readlinkat wrote n <= sizeof buf bytes.
  return Napi::Buffer<char>::Copy(info.Env(), buf, static_cast<size_t>(n));
}

Napi::Value Unlinkat(const Napi::CallbackInfo& info) {
  int dirfd = FdArg(info[0], "dirfd");
  std::string name = PathArg(info[1], "name");
  int flags = static_cast<int>(IntArg(info[2], "flags"));
  if (::unlinkat(dirfd, name.c_str(), flags) != 0) ThrowSys(info.Env(), "unlinkat", name);
  return info.Env().Undefined();
}

Napi::Value Renameat2(const Napi::CallbackInfo& info) {
  int olddir = FdArg(info[0], "olddirfd");
  std::string oldname = PathArg(info[1], "oldname");
  int newdir = FdArg(info[2], "newdirfd");
  std::string newname = PathArg(info[3], "newname");
  auto flags = static_cast<unsigned>(IntArg(info[4], "flags"));
  if (::syscall(SYS_renameat2, olddir, oldname.c_str(), newdir, newname.c_str(), flags) != 0) {
    ThrowSys(info.Env(), "renameat2", oldname);
  }
  return info.Env().Undefined();
}

// linkat(/proc/self/fd/N, newdirfd, newname, AT_SYMLINK_FOLLOW): a new name for the inode of fd
// (following only the magic link, so a symlink inode gets a second name, its target none).
Napi::Value Linkat(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  int newdir = FdArg(info[1], "newdirfd");
  std::string newname = PathArg(info[2], "newname");
  if (::linkat(AT_FDCWD, ProcFd(fd).c_str(), newdir, newname.c_str(), AT_SYMLINK_FOLLOW) != 0) {
    ThrowSys(info.Env(), "linkat", newname);
  }
  return info.Env().Undefined();
}

// fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); -1 leaves an id unchanged.
Napi::Value Fchown(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  auto uid = static_cast<uid_t>(info[1].As<Napi::Number>().Int64Value());
  auto gid = static_cast<gid_t>(info[2].As<Napi::Number>().Int64Value());
  if (::fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(info.Env(), "fchownat");
  return info.Env().Undefined();
}

Napi::Value Chmod(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  auto mode = static_cast<mode_t>(IntArg(info[1], "mode"));
  if (::fchmodat(AT_FDCWD, ProcFd(fd).c_str(), mode, 0) != 0) ThrowSys(info.Env(), "fchmodat");
  return info.Env().Undefined();
}

// utimensat on the inode of fd; nanoseconds may be UTIME_NOW or UTIME_OMIT.
Napi::Value Utimens(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  struct timespec ts[2];
  ts[0].tv_sec = static_cast<time_t>(IntArg(info[1], "atime seconds"));
  ts[0].tv_nsec = static_cast<long>(IntArg(info[2], "atime nanoseconds"));
  ts[1].tv_sec = static_cast<time_t>(IntArg(info[3], "mtime seconds"));
  ts[1].tv_nsec = static_cast<long>(IntArg(info[4], "mtime nanoseconds"));
  if (::utimensat(AT_FDCWD, ProcFd(fd).c_str(), ts, 0) != 0) ThrowSys(info.Env(), "utimensat");
  return info.Env().Undefined();
}

// truncate(2) of the inode of an O_PATH fd: never opens it (a device stays closed; non-files fail).
Napi::Value Truncate(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  auto size = static_cast<off_t>(IntArg(info[1], "size"));
  if (::truncate(ProcFd(fd).c_str(), size) != 0) ThrowSys(info.Env(), "truncate");
  return info.Env().Undefined();
}

Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  int mode = static_cast<int>(IntArg(info[1], "mode"));
  auto offset = static_cast<off_t>(IntArg(info[2], "offset"));
  auto length = static_cast<off_t>(IntArg(info[3], "length"));
  if (::fallocate(fd, mode, offset, length) != 0) ThrowSys(info.Env(), "fallocate");
  return info.Env().Undefined();
}

Napi::Value Lseek(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  auto offset = static_cast<off_t>(IntArg(info[1], "offset"));
  int whence = static_cast<int>(IntArg(info[2], "whence"));
  off_t r = ::lseek(fd, offset, whence);
  if (r < 0) ThrowSys(info.Env(), "lseek");
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

Napi::Value Fstatvfs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  struct statvfs s;
  if (::fstatvfs(fd, &s) != 0) ThrowSys(env, "fstatvfs");
  Napi::Object o = Napi::Object::New(env);
  o.Set("bsize", Napi::Number::New(env, static_cast<double>(s.f_bsize)));
  o.Set("frsize", Napi::Number::New(env, static_cast<double>(s.f_frsize)));
  o.Set("blocks", Napi::Number::New(env, static_cast<double>(s.f_blocks)));
  o.Set("bfree", Napi::Number::New(env, static_cast<double>(s.f_bfree)));
  o.Set("bavail", Napi::Number::New(env, static_cast<double>(s.f_bavail)));
  o.Set("files", Napi::Number::New(env, static_cast<double>(s.f_files)));
  o.Set("ffree", Napi::Number::New(env, static_cast<double>(s.f_ffree)));
  o.Set("namemax", Napi::Number::New(env, static_cast<double>(s.f_namemax)));
  return o;
}

// FLUSH: close a duplicate, so the host sees a close(2) of the file (POSIX lock release, NFS flush).
Napi::Value DupClose(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  int d = ::dup(fd);
  if (d < 0) ThrowSys(info.Env(), "dup");
  if (::close(d) != 0) ThrowSys(info.Env(), "close");
  return info.Env().Undefined();
}

}  // namespace

// The other passthrough files (passthrough_create.cc, passthrough_dir.cc, passthrough_xattr.cc).
void InitPassthroughCreate(Napi::Env env, Napi::Object exports);
void InitPassthroughDir(Napi::Env env, Napi::Object exports);
void InitPassthroughXattr(Napi::Env env, Napi::Object exports);

void InitPassthrough(Napi::Env env, Napi::Object exports) {
  InitPassthroughCreate(env, exports);
  InitPassthroughDir(env, exports);
  InitPassthroughXattr(env, exports);
  exports.Set("ptOpenat2", Napi::Function::New(env, Openat2, "ptOpenat2"));
  exports.Set("ptReopen", Napi::Function::New(env, Reopen, "ptReopen"));
  exports.Set("ptStatxInto", Napi::Function::New(env, StatxInto, "ptStatxInto"));
  exports.Set("ptOpenParentBeneath", Napi::Function::New(env, OpenParentBeneath, "ptOpenParentBeneath"));
  exports.Set("ptReadlink", Napi::Function::New(env, Readlink, "ptReadlink"));
  exports.Set("ptUnlinkat", Napi::Function::New(env, Unlinkat, "ptUnlinkat"));
  exports.Set("ptRenameat2", Napi::Function::New(env, Renameat2, "ptRenameat2"));
  exports.Set("ptLinkat", Napi::Function::New(env, Linkat, "ptLinkat"));
  exports.Set("ptFchown", Napi::Function::New(env, Fchown, "ptFchown"));
  exports.Set("ptChmod", Napi::Function::New(env, Chmod, "ptChmod"));
  exports.Set("ptUtimens", Napi::Function::New(env, Utimens, "ptUtimens"));
  exports.Set("ptTruncate", Napi::Function::New(env, Truncate, "ptTruncate"));
  exports.Set("ptFallocate", Napi::Function::New(env, Fallocate, "ptFallocate"));
  exports.Set("ptLseek", Napi::Function::New(env, Lseek, "ptLseek"));
  exports.Set("ptFstatvfs", Napi::Function::New(env, Fstatvfs, "ptFstatvfs"));
  exports.Set("ptDupClose", Napi::Function::New(env, DupClose, "ptDupClose"));
}

}  // namespace damselfly
