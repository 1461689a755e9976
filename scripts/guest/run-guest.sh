#!/usr/bin/env bash
# Boots the Damselfly test guest (Debian kernel + scripts/guest/build-initramfs.sh) under QEMU/TCG
# with one or more vhost-user-fs devices, runs a check script in it, and exits with its status.
#
# Usage: scripts/guest/run-guest.sh --fs SOCKET:TAG[:QUEUE_SIZE[:REQUEST_QUEUES]] [--fs …] [options]
#   --fs SOCKET:TAG[:QS[:NRQ]]  a vhost-user-fs-pci device on the backend's unix SOCKET, mounted in
#                          the guest at /mnt/TAG; QS = queue-size, NRQ = num-request-queues
#                          (the C virtiofsd offers 1 request queue only)
#   --script FILE          the check script, run by the guest as /check.sh (busybox sh)
#   --add HOST:GUEST       another file for the guest (e.g. --add ./tool:/bin/tool); repeatable
#   --memory SIZE          guest RAM, e.g. 1G or 512M (default 1G)
#   --mem-backend memfd|file   shared guest memory: memory-backend-memfd (default), or
#                          memory-backend-file in --mem-path like Kata (default /dev/shm)
#   --mem-path DIR         directory for --mem-backend file
#   --slots N --maxmem SIZE  memory hot-plug room (default 4 slots, maxmem = memory + 4G)
#   --queue-size N         default queue-size of every --fs device (QEMU's default is 128)
#   --request-queues N     default num-request-queues of every --fs device
#   --smp N                vCPUs (default 1)
#   --qmp PATH             QMP socket (unix, server=on, wait=off): object-add + device_add pc-dimm,
#                          system_reset, quit, …
#   --reboot N             the guest reboots itself N times, running the script each boot
#   --hold                 the guest waits after the script with its mounts (for QMP-driven tests);
#                          this script then returns only when QEMU ends (QMP quit, signal, timeout)
#   --no-mount             the guest mounts nothing; the script mounts what it wants
#   --timeout SECONDS      kill QEMU after this long (default 180)
#   --log FILE             the console log (default: a temp file, removed)
#   --quiet                do not copy the console to stdout
#   --append ARGS          more kernel command line (e.g. loglevel=7 to drop `quiet`'s effect)
#   --kernel FILE --initramfs FILE   skip build-initramfs.sh (both from its output)
#   --qemu-arg ARG         one more QEMU argument; repeatable
#   --wait-socket SECONDS  wait this long for the --fs sockets to appear (default 10)
#   --keep-on-backend-loss   keep QEMU running when a backend closes its socket (QEMU 7.2 then
#                          neither exits nor reconnects and guest I/O on that mount hangs; by
#                          default this script stops QEMU and exits 125 at once)
#
# The console (the guest's ttyS0) goes to stdout, and to --log. The guest prints markers
# (DAMSELFLY-GUEST-BOOT n, -BEGIN, -END s, -EXIT s, …; see build-initramfs.sh). Exit status:
#   the first non-zero DAMSELFLY-GUEST-EXIT status, else 0 when every expected boot exited;
#   124 on timeout; 125 when QEMU failed, the kernel panicked, a backend went away or the markers
#   are missing.
# A summary line `run-guest: …` goes to stderr. QEMU is killed on any exit of this script
# (signals included); the backend behind the socket is the caller's to start and stop.
#
# Example, with the reference C virtiofsd:
#   /usr/lib/qemu/virtiofsd --socket-path=/tmp/vfs.sock -o source=/srv/share -o xattr &
#   echo 'ls -la /mnt/share; sha256sum /mnt/share/*' >/tmp/check.sh
#   scripts/guest/run-guest.sh --fs /tmp/vfs.sock:share --script /tmp/check.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "run-guest: error: $*" >&2; exit 125; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# to_mib SIZE: 1G, 512M, 1536m, 2g, 1073741824 (bytes) -> MiB
to_mib() {
  local v=${1,,} n
  n=${v%[kmgt]}
  [[ $n =~ ^[0-9]+$ ]] || die "bad size '$1'"
  case $v in
    *k) echo $((n / 1024)) ;;
    *m) echo "$n" ;;
    *g) echo $((n * 1024)) ;;
    *t) echo $((n * 1024 * 1024)) ;;
    *) echo $((n / 1024 / 1024)) ;;
  esac
}

fs=()
adds=()
script=
memory=1G
mem_backend=memfd
mem_path=/dev/shm
slots=4
maxmem=
queue_size=
request_queues=
smp=1
qmp=
reboots=0
hold=0
nomount=0
timeout=180
log=
quiet=0
append=
kernel=
initramfs=
qemu_extra=()
wait_socket=10
keep_on_loss=0

while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    -h | --help) usage; exit 0 ;;
    --hold) hold=1; shift; continue ;;
    --no-mount) nomount=1; shift; continue ;;
    --quiet) quiet=1; shift; continue ;;
    --keep-on-backend-loss) keep_on_loss=1; shift; continue ;;
  esac
  [ $# -ge 2 ] || die "$opt needs a value (see --help)"
  val=$2
  shift 2
  case $opt in
    --fs) fs+=("$val") ;;
    --script) script=$val ;;
    --add) adds+=("$val") ;;
    --memory) memory=$val ;;
    --mem-backend) mem_backend=$val ;;
    --mem-path) mem_path=$val ;;
    --slots) slots=$val ;;
    --maxmem) maxmem=$val ;;
    --queue-size) queue_size=$val ;;
    --request-queues) request_queues=$val ;;
    --smp) smp=$val ;;
    --qmp) qmp=$val ;;
    --reboot) reboots=$val ;;
    --timeout) timeout=$val ;;
    --log) log=$val ;;
    --append) append=$val ;;
    --kernel) kernel=$val ;;
    --initramfs) initramfs=$val ;;
    --qemu-arg) qemu_extra+=("$val") ;;
    --wait-socket) wait_socket=$val ;;
    *) die "unknown option $opt (see --help)" ;;
  esac
done

[ ${#fs[@]} -gt 0 ] || [ "$nomount" = 1 ] || die "no --fs SOCKET:TAG (see --help)"
[[ $reboots =~ ^[0-9]+$ ]] || die "--reboot wants a number"
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds"
case $mem_backend in memfd | file) ;; *) die "--mem-backend is memfd or file" ;; esac
[ -z "$script" ] || [ -r "$script" ] || die "cannot read --script $script"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is absent (apt-get install qemu-system-x86)"

if [ -z "$kernel" ] || [ -z "$initramfs" ]; then
  info=$("$here/build-initramfs.sh") || die "build-initramfs.sh failed"
  [ -n "$kernel" ] || kernel=$(sed -n 's/^kernel=//p' <<<"$info")
  [ -n "$initramfs" ] || initramfs=$(sed -n 's/^initramfs=//p' <<<"$info")
fi

tmp=$(mktemp -d /tmp/damselfly-guest.XXXXXX)
qpid=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
    kill -TERM "$qpid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$qpid" 2>/dev/null || break
      sleep 0.3
    done
    kill -KILL "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

[ -n "$log" ] || log=$tmp/console.log
mkdir -p "$(dirname "$log")"
: >"$log"

# The initrd: the cached archive, then a second cpio.gz with /check.sh and --add files (the
# kernel unpacks concatenated archives in order).
initrd=$initramfs
if [ -n "$script" ] || [ ${#adds[@]} -gt 0 ]; then
  extra=$tmp/extra
  mkdir -p "$extra"
  if [ -n "$script" ]; then install -m 755 "$script" "$extra/check.sh"; fi
  for a in "${adds[@]}"; do
    src=${a%%:*}
    dst=${a#*:}
    [ "$src" != "$a" ] && [ "${dst#/}" != "$dst" ] || die "--add wants HOST:/GUEST/PATH, got $a"
    [ -e "$src" ] || die "--add: $src is absent"
    mkdir -p "$extra$(dirname "$dst")"
    cp -a "$src" "$extra$dst"
  done
  (cd "$extra" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 -n >"$tmp/extra.cpio.gz"
  cat "$initramfs" "$tmp/extra.cpio.gz" >"$tmp/initrd"
  initrd=$tmp/initrd
fi

mem_mib=$(to_mib "$memory")
if [ -n "$maxmem" ]; then maxmem_mib=$(to_mib "$maxmem"); else maxmem_mib=$((mem_mib + 4096)); fi

if [ "$mem_backend" = memfd ]; then
  memobj="memory-backend-memfd,id=mem,size=${mem_mib}M,share=on"
else
  memobj="memory-backend-file,id=mem,size=${mem_mib}M,mem-path=$mem_path,share=on"
fi

tags=()
devargs=()
i=0
deadline=$((SECONDS + wait_socket))
for spec in "${fs[@]}"; do
  IFS=: read -r sock tag qs nrq <<<"$spec"
  [ -n "$sock" ] && [ -n "$tag" ] || die "--fs wants SOCKET:TAG[:QUEUE_SIZE[:REQUEST_QUEUES]], got $spec"
  qs=${qs:-$queue_size}
  nrq=${nrq:-$request_queues}
  until [ -S "$sock" ]; do
    [ $SECONDS -lt $deadline ] || die "socket $sock did not appear in ${wait_socket}s"
    sleep 0.1
  done
  dev="vhost-user-fs-pci,chardev=fs$i,tag=$tag"
  [ -z "$qs" ] || dev+=",queue-size=$qs"
  [ -z "$nrq" ] || dev+=",num-request-queues=$nrq"
  devargs+=(-chardev "socket,id=fs$i,path=$sock" -device "$dev")
  tags+=("$tag")
  i=$((i + 1))
done

cmdline="console=ttyS0 panic=-1 quiet memhp_default_state=online"
cmdline+=" damselfly.tags=$(IFS=,; echo "${tags[*]:-}")"
[ "$reboots" = 0 ] || cmdline+=" damselfly.reboot=$reboots"
[ "$hold" = 0 ] || cmdline+=" damselfly.hold=1"
[ "$nomount" = 0 ] || cmdline+=" damselfly.nomount=1"
[ -z "$append" ] || cmdline+=" $append"

if [ "$quiet" = 1 ]; then
  console=(-chardev "file,id=con,path=$log")
else
  console=(-chardev "stdio,id=con,signal=off,logfile=$log")
fi

args=(
  -name damselfly-guest -machine q35 -accel tcg -cpu max -smp "$smp"
  -m "${mem_mib}M,slots=$slots,maxmem=${maxmem_mib}M"
  -object "$memobj" -numa node,memdev=mem
  -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
  -nodefaults -no-user-config -display none
  "${console[@]}" -serial chardev:con
  "${devargs[@]}"
)
[ -z "$qmp" ] || args+=(-qmp "unix:$qmp,server=on,wait=off")
# A guest reboot (reboot -f, or a panic with panic=-1) ends QEMU unless reboots are expected;
# QMP system_reset also needs QEMU to stay up, so --qmp keeps it too.
if [ "$reboots" = 0 ] && [ -z "$qmp" ] && [ "$hold" = 0 ]; then args+=(-no-reboot); fi
args+=("${qemu_extra[@]}")

ppid0=$PPID
start=$SECONDS
# QEMU's stderr goes to ours and to a file watched for a lost backend.
: >"$tmp/qemu.err"
qemu-system-x86_64 "${args[@]}" </dev/null 2> >(tee -a "$tmp/qemu.err" >&2) &
qpid=$!

why=
ticks=0
while kill -0 "$qpid" 2>/dev/null; do
  if [ $((SECONDS - start)) -ge "$timeout" ]; then
    why=timeout
    break
  fi
  ticks=$((ticks + 1))
  if [ $((ticks % 5)) = 0 ]; then
    # The caller is gone (SIGKILLed test runner): do not leave QEMU behind.
    read -r _ _ _ ppid _ </proc/$$/stat
    if [ "$ppid" != "$ppid0" ]; then
      why=orphaned
      break
    fi
    if grep -aq 'Kernel panic - not syncing' "$log"; then
      sleep 1
      why=panic
      break
    fi
    if [ "$keep_on_loss" = 0 ] && grep -aqE 'Unexpected end-of-file|Error starting vhost|vhost lost connection' "$tmp/qemu.err"; then
      why=backend
      break
    fi
  fi
  sleep 0.2
done
qrc=0
if [ -n "$why" ]; then
  kill -TERM "$qpid" 2>/dev/null || true
fi
wait "$qpid" || qrc=$?
qpid=
elapsed=$((SECONDS - start))

mapfile -t exits < <(grep -ao 'DAMSELFLY-GUEST-EXIT [0-9]*' "$log" | awk '{print $2}')
boots=$(grep -ac 'DAMSELFLY-GUEST-BOOT [0-9]' "$log" || true)
errors=$(grep -a 'DAMSELFLY-GUEST-ERROR' "$log" | tr -d '\r' | paste -sd';' || true)
[ -z "$errors" ] || echo "run-guest: guest errors: $errors" >&2

case $why in
  timeout) echo "run-guest: timeout after ${timeout}s (boots seen: $boots, exits: ${exits[*]:-none})" >&2; exit 124 ;;
  orphaned) echo "run-guest: the caller went away; QEMU stopped" >&2; exit 125 ;;
  panic) echo "run-guest: kernel panic in the guest (see the console)" >&2; exit 125 ;;
  backend) echo "run-guest: a vhost-user backend closed its socket or failed (QEMU stopped; see above)" >&2; exit 125 ;;
esac

expected=$((reboots + 1))
if [ ${#exits[@]} -eq 0 ]; then
  echo "run-guest: QEMU exited $qrc after ${elapsed}s without a DAMSELFLY-GUEST-EXIT marker" >&2
  exit 125
fi
status=0
for s in "${exits[@]}"; do
  if [ "$s" != 0 ]; then
    status=$s
    break
  fi
done
# With --hold or --qmp the host may end or reset the guest at any point: no count to check.
if [ "$status" = 0 ] && [ "$hold" = 0 ] && [ -z "$qmp" ] && [ ${#exits[@]} -lt "$expected" ]; then
  echo "run-guest: only ${#exits[@]} of $expected boots exited (QEMU exited $qrc)" >&2
  exit 125
fi
echo "run-guest: guest status $status (boots $boots, exits ${exits[*]}, QEMU $qrc, ${elapsed}s)" >&2
exit "$status"
