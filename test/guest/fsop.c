/*
 * fsop: one file-system system call per invocation, for the guest POSIX conformance run
 * (test/integration/passthrough-guest.test.ts). Built by the test with `gcc -static` and added to
 * the guest's initramfs as /bin/fsop. Busybox covers the everyday commands; this covers what it
 * lacks (xattrs, renameat2 flags, open flags, copy_file_range, SEEK_DATA, shared mmap, running as
 * another user) and reports errors by errno name, so a result is one short line:
 *
 *   fsop OP ARGS...        prints "ok[ RESULT]" and exits 0, or "ENAME (strerror)" and exits 1
 *   fsop as UID GID[,G...] OP ARGS...   the same, with real/effective/saved uid and gid and the
 *                          supplementary groups (G...: none when absent) switched first
 *   fsop umask OCTAL OP ARGS...         the same, under that umask
 *
 * Operations (paths relative to the current directory; modes octal):
 *   stat P            lstat: type, mode, nlink, size (not for directories), uid, gid, rdev
 *   fstat-unlinked P  open P read-only, unlink it, fstat and read through the open fd
 *   mtime P           lstat mtime as SEC.NSEC
 *   open P FLAGS [MODE]   FLAGS: comma list of rdonly wronly rdwr creat excl trunc append directory
 *                     nofollow noatime direct; the fd is closed again
 *   write P TEXT      open O_WRONLY, pwrite TEXT at 0
 *   pwrite P OFF TEXT open O_WRONLY, pwrite at OFF
 *   append P TEXT     open O_WRONLY|O_APPEND, write
 *   create-write P MODE TEXT   open(O_CREAT|O_EXCL|O_WRONLY, MODE) and write TEXT through that fd
 *   direct-io P       O_DIRECT|O_CREAT: write 8 KiB aligned at 4 KiB, read them back, compare
 *   read P            the whole file as text (non-printable bytes as \xHH)
 *   truncate P LEN    truncate(2) by path;  ftruncate P LEN  through an O_WRONLY fd
 *   mkdir P MODE; rmdir P; unlink P; link OLD NEW; symlink TARGET P; readlink P
 *   mknod P TYPE MODE MAJ MIN    TYPE: c b p s f
 *   rename OLD NEW [noreplace|exchange|whiteout]     renameat2
 *   chmod P MODE; chown P UID GID (follows symlinks); lchown P UID GID
 *   utimens P ASEC ANSEC MSEC MNSEC    (utimensat, no follow; "omit" for a pair left alone)
 *   setxattr P NAME VALUE [create|replace]; getxattr P NAME; listxattr P; removexattr P NAME
 *   lsetxattr, lgetxattr, llistxattr, lremovexattr: the same without following a symlink
 *   setxattr-hex P NAME HEX       a binary value
 *   ls P              directory entries (. and .. left out) as NAME:TYPE, sorted
 *   fallocate P MODE OFF LEN      MODE: 0, keep (KEEP_SIZE), punch (PUNCH_HOLE|KEEP_SIZE), zero
 *   seek P data|hole OFF          lseek SEEK_DATA / SEEK_HOLE
 *   copy SRC DST LEN              copy_file_range from SRC (offset 0) into DST (created, offset 0)
 *   mmap-write P OFF TEXT         MAP_SHARED writable mapping of P, TEXT stored at OFF, msync
 *   fsync P; statfs P (namelen)
 *   getflags P        ioctl FS_IOC_GETFLAGS (lsattr) on P opened read-only
 *   access P MODE     access(2), MODE: a combination of r w x, or f
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#define RENAME_WHITEOUT (1 << 2)
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#define FALLOC_FL_PUNCH_HOLE 0x02
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

static const struct {
  int no;
  const char *name;
} ERRNOS[] = {
    {EPERM, "EPERM"},     {ENOENT, "ENOENT"},       {EIO, "EIO"},           {ENXIO, "ENXIO"},
    {E2BIG, "E2BIG"},     {EBADF, "EBADF"},         {EAGAIN, "EAGAIN"},     {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"},   {EFAULT, "EFAULT"},       {EBUSY, "EBUSY"},       {EEXIST, "EEXIST"},
    {EXDEV, "EXDEV"},     {ENODEV, "ENODEV"},       {ENOTDIR, "ENOTDIR"},   {EISDIR, "EISDIR"},
    {EINVAL, "EINVAL"},   {ENFILE, "ENFILE"},       {EMFILE, "EMFILE"},     {ETXTBSY, "ETXTBSY"},
    {EFBIG, "EFBIG"},     {ENOSPC, "ENOSPC"},       {ESPIPE, "ESPIPE"},     {EROFS, "EROFS"},
    {EMLINK, "EMLINK"},   {ERANGE, "ERANGE"},       {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOSYS, "ENOSYS"},   {ENOTEMPTY, "ENOTEMPTY"}, {ELOOP, "ELOOP"},       {ENODATA, "ENODATA"},
    {EOVERFLOW, "EOVERFLOW"}, {EOPNOTSUPP, "EOPNOTSUPP"}, {ENOTTY, "ENOTTY"}, {ESTALE, "ESTALE"},
    {EDQUOT, "EDQUOT"},
};

static int fail(void) {
  int e = errno;
  const char *name = NULL;
  for (size_t i = 0; i < sizeof ERRNOS / sizeof ERRNOS[0]; i++)
    if (ERRNOS[i].no == e) name = ERRNOS[i].name;
  if (name)
    printf("%s (%s)\n", name, strerror(e));
  else
    printf("errno %d (%s)\n", e, strerror(e));
  return 1;
}

static int ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int ok(const char *fmt, ...) {
  if (fmt == NULL) {
    puts("ok");
    return 0;
  }
  fputs("ok ", stdout);
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  return 0;
}

static unsigned long octal(const char *s) { return strtoul(s, NULL, 8); }
static long long num(const char *s) { return strtoll(s, NULL, 10); }

static const char *type_of(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
  }
  return "?";
}

static int print_stat(const struct stat *st) {
  char size[32] = "";
  if (!S_ISDIR(st->st_mode)) snprintf(size, sizeof size, " size=%lld", (long long)st->st_size);
  return ok("%s mode=%04o nlink=%lu%s uid=%u gid=%u rdev=%u:%u", type_of(st->st_mode), (unsigned)(st->st_mode & 07777),
            (unsigned long)st->st_nlink, size, st->st_uid, st->st_gid, major(st->st_rdev), minor(st->st_rdev));
}

static void print_text(const char *buf, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c >= 0x20 && c < 0x7f && c != '\\')
      putchar(c);
    else
      printf("\\x%02x", c);
  }
}

static int open_flags(const char *list) {
  int f = 0;
  char *copy = strdup(list), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (!strcmp(t, "rdonly")) f |= O_RDONLY;
    else if (!strcmp(t, "wronly")) f |= O_WRONLY;
    else if (!strcmp(t, "rdwr")) f |= O_RDWR;
    else if (!strcmp(t, "creat")) f |= O_CREAT;
    else if (!strcmp(t, "excl")) f |= O_EXCL;
    else if (!strcmp(t, "trunc")) f |= O_TRUNC;
    else if (!strcmp(t, "append")) f |= O_APPEND;
    else if (!strcmp(t, "directory")) f |= O_DIRECTORY;
    else if (!strcmp(t, "nofollow")) f |= O_NOFOLLOW;
    else if (!strcmp(t, "noatime")) f |= O_NOATIME;
    else if (!strcmp(t, "direct")) f |= O_DIRECT;
    else {
      fprintf(stderr, "fsop: unknown open flag %s\n", t);
      exit(2);
    }
  }
  free(copy);
  return f;
}

static int hexval(char c) { return c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0'; }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_xattrs(const char *p, int follow) {
  char buf[65536];
  ssize_t n = follow ? listxattr(p, buf, sizeof buf) : llistxattr(p, buf, sizeof buf);
  if (n < 0) return fail();
  char *names[1024];
  size_t count = 0;
  for (ssize_t i = 0; i < n && count < 1024; i += (ssize_t)strlen(buf + i) + 1) names[count++] = buf + i;
  qsort(names, count, sizeof names[0], cmp_str);
  fputs("ok [", stdout);
  for (size_t i = 0; i < count; i++) printf("%s%s", i ? " " : "", names[i]);
  puts("]");
  return 0;
}

static int get_xattr(const char *p, const char *name, int follow) {
  char buf[65536];
  ssize_t n = follow ? getxattr(p, name, buf, sizeof buf) : lgetxattr(p, name, buf, sizeof buf);
  if (n < 0) return fail();
  fputs("ok ", stdout);
  print_text(buf, (size_t)n);
  putchar('\n');
  return 0;
}

static int run(int argc, char **argv);

static int op_as(int argc, char **argv) {
  if (argc < 4) return 2;
  uid_t uid = (uid_t)num(argv[1]);
  char *gids = strdup(argv[2]);
  gid_t groups[32];
  size_t ng = 0;
  char *save = NULL;
  char *first = strtok_r(gids, ",", &save);
  gid_t gid = (gid_t)num(first);
  for (char *t = strtok_r(NULL, ",", &save); t && ng < 32; t = strtok_r(NULL, ",", &save)) groups[ng++] = (gid_t)num(t);
  if (setgroups(ng, groups) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) return fail();
  free(gids);
  return run(argc - 3, argv + 3);
}

static int run(int argc, char **argv) {
  if (argc < 1) return 2;
  const char *op = argv[0];
  const char *p = argc > 1 ? argv[1] : "";
#define NEED(n)                                              \
  do {                                                       \
    if (argc < (n) + 1) {                                    \
      fprintf(stderr, "fsop %s: %d arguments needed\n", op, n); \
      return 2;                                              \
    }                                                        \
  } while (0)
  struct stat st;
  if (!strcmp(op, "as")) return op_as(argc, argv);
  if (!strcmp(op, "umask")) {
    NEED(2);
    umask((mode_t)octal(argv[1]));
    return run(argc - 2, argv + 2);
  }
  if (!strcmp(op, "stat")) {
    NEED(1);
    return lstat(p, &st) < 0 ? fail() : print_stat(&st);
  }
  if (!strcmp(op, "fstat-unlinked")) {
    NEED(1);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return fail();
    if (unlink(p) < 0 || fstat(fd, &st) < 0) return fail();
    char buf[256];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n < 0) return fail();
    printf("ok nlink=%lu size=%lld read=", (unsigned long)st.st_nlink, (long long)st.st_size);
    print_text(buf, (size_t)n);
    putchar('\n');
    return 0;
  }
  if (!strcmp(op, "mtime")) {
    NEED(1);
    return lstat(p, &st) < 0 ? fail() : ok("%lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  if (!strcmp(op, "open")) {
    NEED(2);
    int fd = open(p, open_flags(argv[2]), argc > 3 ? (mode_t)octal(argv[3]) : 0644);
    if (fd < 0) return fail();
    close(fd);
    return ok(NULL);
  }
  if (!strcmp(op, "write") || !strcmp(op, "pwrite") || !strcmp(op, "append")) {
    int append = !strcmp(op, "append");
    int at = !strcmp(op, "pwrite");
    NEED(2 + at);
    const char *text = argv[2 + at];
    int fd = open(p, O_WRONLY | (append ? O_APPEND : 0));
    if (fd < 0) return fail();
    ssize_t n = append ? write(fd, text, strlen(text)) : pwrite(fd, text, strlen(text), at ? (off_t)num(argv[2]) : 0);
    if (n < 0) return fail();
    if (close(fd) < 0) return fail();
    return ok("%zd", n);
  }
  if (!strcmp(op, "create-write")) {
    NEED(3);
    int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, (mode_t)octal(argv[2]));
    if (fd < 0) return fail();
    ssize_t n = write(fd, argv[3], strlen(argv[3]));
    if (n < 0) return fail();
    if (close(fd) < 0) return fail();
    return ok("%zd", n);
  }
  if (!strcmp(op, "direct-io")) {
    NEED(1);
    int fd = open(p, O_CREAT | O_RDWR | O_DIRECT, 0644);
    if (fd < 0) return fail();
    void *w, *r;
    if (posix_memalign(&w, 4096, 8192) != 0 || posix_memalign(&r, 4096, 8192) != 0) return fail();
    for (int i = 0; i < 8192; i++) ((unsigned char *)w)[i] = (unsigned char)(i * 7 + 1);
    ssize_t n = pwrite(fd, w, 8192, 4096);
    if (n < 0) return fail();
    ssize_t m = pread(fd, r, 8192, 4096);
    if (m < 0) return fail();
    if (fstat(fd, &st) < 0) return fail();
    close(fd);
    return ok("wrote=%zd read=%zd same=%s size=%lld", n, m, m == n && !memcmp(w, r, (size_t)n) ? "yes" : "no", (long long)st.st_size);
  }
  if (!strcmp(op, "read")) {
    NEED(1);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return fail();
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) return fail();
    close(fd);
    fputs("ok ", stdout);
    print_text(buf, (size_t)n);
    putchar('\n');
    return 0;
  }
  if (!strcmp(op, "truncate")) {
    NEED(2);
    return truncate(p, (off_t)num(argv[2])) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "ftruncate")) {
    NEED(2);
    int fd = open(p, O_WRONLY);
    if (fd < 0) return fail();
    if (ftruncate(fd, (off_t)num(argv[2])) < 0) return fail();
    close(fd);
    return ok(NULL);
  }
  if (!strcmp(op, "mkdir")) {
    NEED(2);
    return mkdir(p, (mode_t)octal(argv[2])) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "rmdir")) {
    NEED(1);
    return rmdir(p) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "unlink")) {
    NEED(1);
    return unlink(p) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "link")) {
    NEED(2);
    return link(p, argv[2]) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "symlink")) {
    NEED(2);
    return symlink(p, argv[2]) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "readlink")) {
    NEED(1);
    char buf[8192];
    ssize_t n = readlink(p, buf, sizeof buf);
    if (n < 0) return fail();
    if (n > 64) return ok("(%zd bytes)", n);
    return ok("%.*s", (int)n, buf);
  }
  if (!strcmp(op, "mknod")) {
    NEED(5);
    mode_t type = 0;
    switch (argv[2][0]) {
      case 'c': type = S_IFCHR; break;
      case 'b': type = S_IFBLK; break;
      case 'p': type = S_IFIFO; break;
      case 's': type = S_IFSOCK; break;
      case 'f': type = S_IFREG; break;
      default: return 2;
    }
    return mknod(p, type | (mode_t)octal(argv[3]), makedev((unsigned)num(argv[4]), (unsigned)num(argv[5]))) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "rename")) {
    NEED(2);
    unsigned flags = 0;
    if (argc > 3) {
      if (!strcmp(argv[3], "noreplace")) flags = RENAME_NOREPLACE;
      else if (!strcmp(argv[3], "exchange")) flags = RENAME_EXCHANGE;
      else if (!strcmp(argv[3], "whiteout")) flags = RENAME_WHITEOUT;
      else return 2;
    }
    return syscall(SYS_renameat2, AT_FDCWD, p, AT_FDCWD, argv[2], flags) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "chmod")) {
    NEED(2);
    return chmod(p, (mode_t)octal(argv[2])) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "chown") || !strcmp(op, "lchown")) {
    NEED(3);
    int (*f)(const char *, uid_t, gid_t) = op[0] == 'l' ? lchown : chown;
    return f(p, (uid_t)num(argv[2]), (gid_t)num(argv[3])) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "utimens")) {
    NEED(5);
    struct timespec ts[2];
    for (int i = 0; i < 2; i++) {
      if (!strcmp(argv[2 + 2 * i], "omit")) {
        ts[i].tv_sec = 0;
        ts[i].tv_nsec = UTIME_OMIT;
      } else {
        ts[i].tv_sec = (time_t)num(argv[2 + 2 * i]);
        ts[i].tv_nsec = (long)num(argv[3 + 2 * i]);
      }
    }
    return utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "setxattr") || !strcmp(op, "lsetxattr")) {
    NEED(3);
    int flags = 0;
    if (argc > 4) flags = !strcmp(argv[4], "create") ? XATTR_CREATE : !strcmp(argv[4], "replace") ? XATTR_REPLACE : 0;
    int r = op[0] == 'l' ? lsetxattr(p, argv[2], argv[3], strlen(argv[3]), flags) : setxattr(p, argv[2], argv[3], strlen(argv[3]), flags);
    return r < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "setxattr-hex")) {
    NEED(3);
    size_t len = strlen(argv[3]) / 2;
    unsigned char *v = malloc(len + 1);
    for (size_t i = 0; i < len; i++) v[i] = (unsigned char)(hexval(argv[3][2 * i]) * 16 + hexval(argv[3][2 * i + 1]));
    return setxattr(p, argv[2], v, len, 0) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "getxattr") || !strcmp(op, "lgetxattr")) {
    NEED(2);
    return get_xattr(p, argv[2], op[0] != 'l');
  }
  if (!strcmp(op, "listxattr") || !strcmp(op, "llistxattr")) {
    NEED(1);
    return list_xattrs(p, op[0] != 'l');
  }
  if (!strcmp(op, "removexattr") || !strcmp(op, "lremovexattr")) {
    NEED(2);
    return (op[0] == 'l' ? lremovexattr(p, argv[2]) : removexattr(p, argv[2])) < 0 ? fail() : ok(NULL);
  }
  if (!strcmp(op, "ls")) {
    NEED(1);
    DIR *d = opendir(p);
    if (!d) return fail();
    char *names[4096];
    size_t count = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL && count < 4096) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      static const char *T[] = {[DT_UNKNOWN] = "?", [DT_FIFO] = "fifo", [DT_CHR] = "char", [DT_DIR] = "dir", [DT_BLK] = "block",
                                [DT_REG] = "file", [DT_LNK] = "symlink", [DT_SOCK] = "socket"};
      const char *t = e->d_type < sizeof T / sizeof T[0] && T[e->d_type] ? T[e->d_type] : "?";
      if (asprintf(&names[count++], "%s:%s", e->d_name, t) < 0) return fail();
    }
    if (errno) return fail();
    closedir(d);
    qsort(names, count, sizeof names[0], cmp_str);
    fputs("ok [", stdout);
    for (size_t i = 0; i < count; i++) printf("%s%s", i ? " " : "", names[i]);
    puts("]");
    return 0;
  }
  if (!strcmp(op, "fallocate")) {
    NEED(4);
    int mode = !strcmp(argv[2], "keep") ? FALLOC_FL_KEEP_SIZE
               : !strcmp(argv[2], "punch") ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
               : !strcmp(argv[2], "zero") ? FALLOC_FL_ZERO_RANGE
               : 0;
    int fd = open(p, O_WRONLY);
    if (fd < 0) return fail();
    if (fallocate(fd, mode, (off_t)num(argv[3]), (off_t)num(argv[4])) < 0) return fail();
    close(fd);
    return ok(NULL);
  }
  if (!strcmp(op, "seek")) {
    NEED(3);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return fail();
    off_t r = lseek(fd, (off_t)num(argv[3]), !strcmp(argv[2], "data") ? SEEK_DATA : SEEK_HOLE);
    if (r < 0) return fail();
    close(fd);
    return ok("%lld", (long long)r);
  }
  if (!strcmp(op, "copy")) {
    NEED(3);
    int in = open(p, O_RDONLY);
    if (in < 0) return fail();
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) return fail();
    loff_t a = 0, b = 0;
    ssize_t n = copy_file_range(in, &a, out, &b, (size_t)num(argv[3]), 0);
    if (n < 0) return fail();
    close(in);
    close(out);
    return ok("%zd", n);
  }
  if (!strcmp(op, "mmap-write")) {
    NEED(3);
    int fd = open(p, O_RDWR);
    if (fd < 0) return fail();
    if (fstat(fd, &st) < 0) return fail();
    off_t off = (off_t)num(argv[2]);
    size_t len = strlen(argv[3]);
    if ((off_t)(off + len) > st.st_size) {
      errno = EINVAL;
      return fail();
    }
    char *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return fail();
    memcpy(m + off, argv[3], len);
    if (msync(m, (size_t)st.st_size, MS_SYNC) < 0) return fail();
    munmap(m, (size_t)st.st_size);
    close(fd);
    return ok(NULL);
  }
  if (!strcmp(op, "fsync")) {
    NEED(1);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || fsync(fd) < 0) return fail();
    close(fd);
    return ok(NULL);
  }
  if (!strcmp(op, "getflags")) {
    NEED(1);
    int fd = open(p, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return fail();
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) return fail();
    close(fd);
    return ok("0x%x", flags);
  }
  if (!strcmp(op, "statfs")) {
    NEED(1);
    struct statfs s;
    return statfs(p, &s) < 0 ? fail() : ok("namelen=%ld", (long)s.f_namelen);
  }
  if (!strcmp(op, "access")) {
    NEED(2);
    int mode = 0;
    for (const char *c = argv[2]; *c; c++) mode |= *c == 'r' ? R_OK : *c == 'w' ? W_OK : *c == 'x' ? X_OK : F_OK;
    return access(p, mode) < 0 ? fail() : ok(NULL);
  }
  fprintf(stderr, "fsop: unknown operation %s\n", op);
  return 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  return run(argc - 1, argv + 1);
}
