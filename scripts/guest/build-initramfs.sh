#!/usr/bin/env bash
# Builds the initramfs of the Damselfly test guest (a Debian kernel under QEMU/TCG mounting
# virtio-fs), cached by kernel version and by the content of this script.
#
# Usage: scripts/guest/build-initramfs.sh [OUT.cpio.gz]
#   Builds (or finds in the cache) the initramfs, copies it to OUT.cpio.gz when given, and prints
#   on stdout, one KEY=VALUE a line:
#     kernel=/boot/vmlinuz-VER      the kernel image to boot with it (QEMU -kernel)
#     kver=VER                      its version
#     initramfs=CACHE/…/initramfs.cpio.gz   the cached archive (usable directly as QEMU -initrd)
#     modules=virtio_ring,…         the modules /init loads, in order (built-in ones are absent)
#     builtin=…                     required modules the kernel has built in (not loaded)
#     xattrs=yes|no                 whether the static xattr helper /bin/xattrs is in it
#   Progress goes to stderr. Safe to run concurrently (flock) and idempotent.
#
# Environment:
#   DAMSELFLY_GUEST_CACHE    cache directory (default /var/cache/damselfly-guest, or
#                            ~/.cache/damselfly-guest when that is not writable)
#   DAMSELFLY_GUEST_KERNEL   kernel image (default: the newest /boot/vmlinuz-* whose
#                            /lib/modules/VER/modules.dep exists)
#   DAMSELFLY_GUEST_KVER     its module version, when the file name is not vmlinuz-VER
#   DAMSELFLY_GUEST_BUSYBOX  static busybox (default /bin/busybox from busybox-static)
#   DAMSELFLY_GUEST_REBUILD=1  ignore the cache
#
# The guest's /init (see GUEST_INIT below for every detail):
#   * mounts proc, sysfs, devtmpfs, tmpfs /tmp; insmods the virtio-pci and virtiofs modules with
#     their dependencies, in dependency order (the Debian 6.1 kernel has all of them as modules:
#     virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci fuse virtiofs);
#   * counts boots in two bytes of CMOS RAM (0x48 counter, 0x49 magic, through /dev/port). QEMU
#     keeps CMOS across a reset (guest `reboot -f` or QMP `system_reset`) and zeroes it on a fresh
#     start, so an initramfs, which cannot keep state, still knows which boot it is;
#   * reads the kernel command line:
#       damselfly.tags=t1,t2   virtio-fs tags to mount at /mnt/<tag> (`mount -t virtiofs TAG …`)
#       damselfly.nomount=1    mount nothing; /check.sh mounts what it wants
#       damselfly.reboot=N     after the script, `reboot -f` while boot <= N (N reboots, N+1 runs)
#       damselfly.hold=1       after the script, keep the mounts and wait (the host hot-plugs,
#                              resets through QMP or quits QEMU)
#   * runs /check.sh (appended by the caller as a second cpio archive) with sh, cwd /, stdin
#     /dev/null, and DAMSELFLY_BOOT, DAMSELFLY_TAGS (space separated), DAMSELFLY_MNT=/mnt;
#   * prints markers on the console, each on its own line:
#       DAMSELFLY-GUEST-BOOT <n>
#       DAMSELFLY-GUEST-MOUNT <tag> ok | DAMSELFLY-GUEST-MOUNT <tag> failed <rc>
#       DAMSELFLY-GUEST-BEGIN
#       … the script's stdout and stderr …
#       DAMSELFLY-GUEST-END <script status>
#       DAMSELFLY-GUEST-UMOUNT <tag> ok|failed
#       DAMSELFLY-GUEST-EXIT <status>   script status; 200 = a mount failed (script not run);
#                                       201 = the script passed but an umount failed
#       DAMSELFLY-GUEST-HOLD | DAMSELFLY-GUEST-REBOOT | DAMSELFLY-GUEST-POWEROFF
#     and `DAMSELFLY-GUEST-ERROR <what>` for anything else that went wrong; then powers off
#     (`poweroff -f`), reboots, or holds.
#
# Guest tools: busybox (sha256sum, find, stat -c, readlink, od, dd, …) with every applet linked
# in /bin, and /bin/xattrs, a static helper (built here with gcc -static; skipped with a warning
# when that fails):
#   xattrs [-L] FILE...  prints "FILE<TAB>NAME<TAB>0xHEX" for every xattr, names sorted, without
#                        following symlinks unless -L; files without xattrs print nothing; an
#                        error prints "FILE<TAB>!<TAB>strerror" and makes the status 1.
set -euo pipefail

self=$(realpath "$0")
log() { echo "build-initramfs: $*" >&2; }
die() { log "error: $*"; exit 1; }

out=
case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  '') ;;
  *) out=$1 ;;
esac
[ $# -le 1 ] || die "usage: $0 [OUT.cpio.gz]"

# The modules virtio-fs needs over virtio-pci; their dependencies come from modules.dep.
TARGET_MODULES=(virtio_pci virtiofs)

# --- kernel ------------------------------------------------------------------------------------
kernel=${DAMSELFLY_GUEST_KERNEL:-}
if [ -z "$kernel" ]; then
  while read -r k; do
    v=${k#/boot/vmlinuz-}
    if [ -f "/lib/modules/$v/modules.dep" ]; then kernel=$k; fi
  done < <(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V)
  [ -n "$kernel" ] || die "no /boot/vmlinuz-* with /lib/modules/VER/modules.dep (apt-get install linux-image-amd64)"
fi
[ -r "$kernel" ] || die "kernel $kernel is not readable"
kver=${DAMSELFLY_GUEST_KVER:-${kernel##*/vmlinuz-}}
moddir=/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep is absent (set DAMSELFLY_GUEST_KVER?)"

busybox=${DAMSELFLY_GUEST_BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "$busybox is absent (apt-get install busybox-static)"
if command -v readelf >/dev/null && readelf -l "$busybox" 2>/dev/null | grep 'program interpreter' >/dev/null; then
  die "$busybox is not statically linked (apt-get install busybox-static)"
fi

# --- modules: dependency closure in load order ---------------------------------------------------
# modname PATH: kernel/fs/fuse/virtiofs.ko.xz -> virtiofs (dashes as underscores, as the kernel does)
modname() {
  local n=${1##*/}
  n=${n%.xz}; n=${n%.zst}; n=${n%.gz}; n=${n%.ko}
  REPLY=${n//-/_}
}
declare -A depline=() seen=()
while IFS= read -r line; do
  modname "${line%%:*}"
  depline[$REPLY]=$line
done <"$moddir/modules.dep"
order=()
builtin=()
resolve() {
  local name=${1//-/_} line dep
  [ -z "${seen[$name]:-}" ] || return 0
  seen[$name]=1
  line=${depline[$name]:-}
  if [ -z "$line" ]; then
    if grep -qE "(^|/)($name|${name//_/-})\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
      builtin+=("$name")
      return 0
    fi
    die "module $name is neither in $moddir/modules.dep nor built in"
  fi
  for dep in ${line#*:}; do
    modname "$dep"
    resolve "$REPLY"
  done
  order+=("${line%%:*}")
}
for m in "${TARGET_MODULES[@]}"; do resolve "$m"; done

# --- cache key ------------------------------------------------------------------------------------
key=$( (
  cat "$self"
  echo "$kver"
  stat -L -c '%n %s %Y' "$kernel" "$busybox" "${order[@]/#/$moddir/}"
) | sha256sum)
key=${key:0:16}

cache=${DAMSELFLY_GUEST_CACHE:-/var/cache/damselfly-guest}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
  [ -z "${DAMSELFLY_GUEST_CACHE:-}" ] || die "cache dir $cache is not writable"
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/damselfly-guest
  mkdir -p "$cache"
fi
final=$cache/$kver/$key
mkdir -p "$cache/$kver"

# The /init of the guest. Busybox ash; kept free of bashisms.
GUEST_INIT=$(
  cat <<'INIT'
#!/bin/sh
# Damselfly test guest /init, generated by scripts/guest/build-initramfs.sh (see its header).
export PATH=/bin HOME=/ TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
exec </dev/null >/dev/console 2>&1

mark() { echo "DAMSELFLY-GUEST-$*"; }

# CMOS RAM through /dev/port: index to port 0x70, data at 0x71 (bytes 0x48-0x49 are unused by
# QEMU, SeaBIOS and Linux).
cmos_get() {
  printf "\\$(printf %o "$1")" | dd of=/dev/port bs=1 seek=112 count=1 conv=notrunc 2>/dev/null
  dd if=/dev/port bs=1 skip=113 count=1 2>/dev/null | od -An -tu1 | tr -d ' '
}
cmos_set() {
  printf "\\$(printf %o "$1")" | dd of=/dev/port bs=1 seek=112 count=1 conv=notrunc 2>/dev/null
  printf "\\$(printf %o "$2")" | dd of=/dev/port bs=1 seek=113 count=1 conv=notrunc 2>/dev/null
}
boot=1
if [ "$(cmos_get 73)" = 213 ]; then boot=$(( $(cmos_get 72) + 1 )); fi
[ "$boot" -le 255 ] || boot=255
cmos_set 72 "$boot"
cmos_set 73 213
mark BOOT "$boot"

for m in $(cat /etc/damselfly/modules); do
  insmod "/lib/modules/$m.ko" || mark ERROR "insmod $m"
done

tags=
reboots=0
hold=0
nomount=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    damselfly.tags=*) tags=$(echo "${arg#*=}" | tr ',' ' ') ;;
    damselfly.reboot=*) reboots=${arg#*=} ;;
    damselfly.hold=*) hold=${arg#*=} ;;
    damselfly.nomount=*) nomount=${arg#*=} ;;
  esac
done

status=0
mounted=
if [ "$nomount" != 1 ]; then
  for t in $tags; do
    mkdir -p "/mnt/$t"
    if mount -t virtiofs "$t" "/mnt/$t"; then
      mounted="$mounted $t"
      mark MOUNT "$t" ok
    else
      rc=$?
      mark MOUNT "$t" failed "$rc"
      status=200
    fi
  done
fi

if [ "$status" = 0 ]; then
  mark BEGIN
  if [ -f /check.sh ]; then
    (cd / && DAMSELFLY_BOOT=$boot DAMSELFLY_TAGS="$tags" DAMSELFLY_MNT=/mnt sh /check.sh </dev/null 2>&1)
    status=$?
  fi
  mark END "$status"
fi

if [ "$hold" = 1 ]; then
  mark EXIT "$status"
  mark HOLD
  while :; do sleep 3600; done
fi

cd /
for t in $mounted; do
  if umount "/mnt/$t"; then
    mark UMOUNT "$t" ok
  else
    mark UMOUNT "$t" failed
    [ "$status" != 0 ] || status=201
  fi
done
mark EXIT "$status"
sync
if [ "$boot" -le "$reboots" ]; then
  mark REBOOT
  reboot -f
elif [ "$boot" -gt $((reboots + 1)) ] && [ "$reboots" != 0 ]; then
  mark ERROR "boot $boot is past damselfly.reboot=$reboots"
fi
mark POWEROFF
poweroff -f
sleep 10
INIT
)

XATTRS_C=$(
  cat <<'EOF'
/* xattrs [-L] FILE...: every xattr of every FILE as "FILE\tNAME\t0xHEX", names sorted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
  int follow = 0, status = 0, i = 1;
  if (i < argc && strcmp(argv[i], "-L") == 0) { follow = 1; i++; }
  if (i >= argc) { fprintf(stderr, "usage: xattrs [-L] FILE...\n"); return 2; }
  for (; i < argc; i++) {
    const char *f = argv[i];
    ssize_t n = follow ? listxattr(f, NULL, 0) : llistxattr(f, NULL, 0);
    if (n < 0) {
      if (errno == ENOTSUP) continue;
      printf("%s\t!\t%s\n", f, strerror(errno)); status = 1; continue;
    }
    if (n == 0) continue;
    char *list = malloc((size_t)n + 1);
    n = follow ? listxattr(f, list, (size_t)n) : llistxattr(f, list, (size_t)n);
    if (n < 0) { printf("%s\t!\t%s\n", f, strerror(errno)); status = 1; free(list); continue; }
    size_t count = 0;
    for (ssize_t p = 0; p < n; p += (ssize_t)strlen(list + p) + 1) count++;
    char **names = calloc(count ? count : 1, sizeof *names);
    size_t k = 0;
    for (ssize_t p = 0; p < n; p += (ssize_t)strlen(list + p) + 1) names[k++] = list + p;
    qsort(names, count, sizeof *names, cmp);
    for (k = 0; k < count; k++) {
      ssize_t v = follow ? getxattr(f, names[k], NULL, 0) : lgetxattr(f, names[k], NULL, 0);
      unsigned char *val = malloc(v > 0 ? (size_t)v : 1);
      if (v >= 0) v = follow ? getxattr(f, names[k], val, (size_t)v) : lgetxattr(f, names[k], val, (size_t)v);
      if (v < 0) { printf("%s\t!\t%s: %s\n", f, names[k], strerror(errno)); status = 1; free(val); continue; }
      printf("%s\t%s\t0x", f, names[k]);
      for (ssize_t j = 0; j < v; j++) printf("%02x", val[j]);
      printf("\n");
      free(val);
    }
    free(names);
    free(list);
  }
  return status;
}
EOF
)

emit() {
  local names=() p
  for p in "${order[@]}"; do
    modname "$p"
    names+=("$REPLY")
  done
  echo "modules=$(IFS=,; echo "${names[*]:-}")"
  echo "builtin=$(IFS=,; echo "${builtin[*]:-}")"
  echo "kernel=$kernel"
  echo "kver=$kver"
  echo "initramfs=$final/initramfs.cpio.gz"
  if [ -x "$final/xattrs" ]; then echo "xattrs=yes"; else echo "xattrs=no"; fi
}

copy_out() {
  [ -n "$out" ] || return 0
  mkdir -p "$(dirname "$out")"
  cp "$final/initramfs.cpio.gz" "$out.tmp.$$"
  mv -f "$out.tmp.$$" "$out"
}

if [ -z "${DAMSELFLY_GUEST_REBUILD:-}" ] && [ -f "$final/initramfs.cpio.gz" ]; then
  touch "$final" 2>/dev/null || true # its age says when it was last used (see the pruning below)
  copy_out
  emit
  exit 0
fi

exec 9>"$cache/$kver/.lock"
flock 9
if [ -n "${DAMSELFLY_GUEST_REBUILD:-}" ] && [ -d "$final" ]; then rm -rf "$final"; fi
if [ ! -f "$final/initramfs.cpio.gz" ]; then
  log "building for kernel $kver in $final"
  work=$(mktemp -d "$cache/$kver/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  root=$work/root
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,etc/damselfly,lib/modules}
  ln -s bin "$root/sbin"
  mkdir -p "$root/usr"
  ln -s ../bin "$root/usr/bin"
  ln -s ../bin "$root/usr/sbin"
  cp "$busybox" "$root/bin/busybox"
  for a in $("$busybox" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
  done
  mknod -m 600 "$root/dev/console" c 5 1
  mknod -m 666 "$root/dev/null" c 1 3

  : >"$root/etc/damselfly/modules"
  for p in "${order[@]}"; do
    modname "$p"
    name=$REPLY
    case "$p" in
      *.ko.xz) xz -dc "$moddir/$p" >"$root/lib/modules/$name.ko" ;;
      *.ko.zst) zstd -qdc "$moddir/$p" >"$root/lib/modules/$name.ko" ;;
      *.ko.gz) gzip -dc "$moddir/$p" >"$root/lib/modules/$name.ko" ;;
      *) cp "$moddir/$p" "$root/lib/modules/$name.ko" ;;
    esac
    echo "$name" >>"$root/etc/damselfly/modules"
  done
  [ ${#builtin[@]} -eq 0 ] || log "built into the kernel (not loaded): ${builtin[*]}"

  printf '%s\n' "$GUEST_INIT" >"$root/init"
  chmod 755 "$root/init"

  printf '%s\n' "$XATTRS_C" >"$work/xattrs.c"
  if gcc -static -O2 -Wall -o "$work/xattrs" "$work/xattrs.c" 2>"$work/gcc.log"; then
    strip "$work/xattrs" 2>/dev/null || true
    cp "$work/xattrs" "$root/bin/xattrs"
  else
    log "warning: the static xattr helper did not build (gcc -static, libc6-dev); guests lack /bin/xattrs"
    sed 's/^/  /' "$work/gcc.log" >&2
  fi

  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$work/initramfs.cpio.gz"
  mkdir -p "$work/final"
  mv "$work/initramfs.cpio.gz" "$work/final/"
  [ ! -f "$work/xattrs" ] || cp "$work/xattrs" "$work/final/xattrs"
  printf '%s\n' "$GUEST_INIT" >"$work/final/init"
  mv -T "$work/final" "$final"
  # Archives of older versions of this script, unused for a week.
  find "$cache/$kver" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]+' ! -path "$final" -mtime +7 -exec rm -rf {} + 2>/dev/null || true
  log "built $final/initramfs.cpio.gz ($(stat -c %s "$final/initramfs.cpio.gz") bytes)"
fi
copy_out
emit
