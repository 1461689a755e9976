#!/usr/bin/env bash
# The floor under every request a guest sends one at a time: the CPU a server spends when a peer
# kicks its eventfd and waits for an eventfd signal back, with no work in between. Measured for a C
# server sleeping in epoll_wait (virtiofsd's kind of loop) and for Node with Damselfly's native
# Poller and an empty callback (the event loop, MakeCallback, N-API). What Damselfly spends per
# request above Node's floor is its own; what Node spends above C's is the runtime's.
# Prints CPU (the scheduler's runtime) per round trip of each server, and the wall time of a
# round trip as the C client sees it.
#
# Usage: scripts/bench/wake-floor.sh [ROUND_TRIPS]   (default 20000; needs cc and a built dist/)
set -euo pipefail
export LC_ALL=C
# shellcheck source=scripts/bench/common.sh
. "$(dirname "$0")/common.sh"
N=${1:-20000}
need_int ROUND_TRIPS "$N" 1000
need_tools cc node

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The client: fds 3 (the server's kick eventfd) and 4 (its reply eventfd), N round trips after a
# warm-up; prints microseconds of wall time per round trip.
cat >"$TMP/client.c" <<'EOF'
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char** argv) {
  int n = atoi(argv[1]);
  fcntl(4, F_SETFL, fcntl(4, F_GETFL) & ~O_NONBLOCK);
  uint64_t one = 1, v;
  for (int i = 0; i < 2000; i++) if (write(3, &one, 8) != 8 || read(4, &v, 8) != 8) return 1;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < n; i++) if (write(3, &one, 8) != 8 || read(4, &v, 8) != 8) return 1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n / 1000.0);
  return 0;
}
EOF
# The C server: epoll_wait on the kick eventfd, read it, signal the reply eventfd.
cat >"$TMP/server.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char** argv) {
  int n = atoi(argv[2]);
  int kick = eventfd(0, EFD_NONBLOCK), reply = eventfd(0, EFD_NONBLOCK), ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = kick};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, kick, &ev) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    char s[16];
    snprintf(s, sizeof s, "%d", n);
    dup2(kick, 3), dup2(reply, 4);
    execl(argv[1], "client", s, (char*)0);
    _exit(1);
  }
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  uint64_t v, one = 1;
  for (int i = 0; i < n + 2000; i++) {
    struct epoll_event out;
    if (epoll_wait(ep, &out, 1, -1) != 1 || read(kick, &v, 8) != 8 || write(reply, &one, 8) != 8) return 1;
  }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  int status = 0;
  waitpid(pid, &status, 0);
  fprintf(stderr, "%.1f\n", ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / (n + 2000) / 1000.0);
  return status == 0 ? 0 : 1;
}
EOF
cc -O2 -o "$TMP/client" "$TMP/client.c"
cc -O2 -o "$TMP/server" "$TMP/server.c"

C_WALL=$("$TMP/server" "$TMP/client" "$N" 2>"$TMP/c-cpu")
C_CPU=$(cat "$TMP/c-cpu")

# The Node server: Damselfly's Poller drains the kick eventfd and calls an empty callback that
# signals the reply eventfd (native.eventfdSignal), as the vhost-user backend's kick path does.
read -r NODE_WALL NODE_CPU < <(node --input-type=module -e "
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { native } from '$ROOT/dist/native/addon.js';
const [client, n] = [process.argv[1], Number(process.argv[2])];
const kick = native.eventfd(0), reply = native.eventfd(0);
const poller = new native.Poller(kick, () => native.eventfdSignal(reply), true);
poller.start(1);
const cpu = () => readdirSync('/proc/self/task').reduce((s, t) => s + Number(readFileSync('/proc/self/task/' + t + '/schedstat', 'utf8').split(' ')[0]), 0);
const c0 = cpu();
const child = spawn(client, [String(n)], { stdio: ['ignore', 'pipe', 'inherit', kick, reply] });
let out = '';
child.stdout.on('data', (d) => (out += d));
child.on('exit', (code) => {
  const c1 = cpu();
  poller.close();
  if (code !== 0) { console.error('the client failed'); process.exit(1); }
  console.log(out.trim(), ((c1 - c0) / (n + 2000) / 1000).toFixed(1));
});
" "$TMP/client" "$N")

echo "== wake-up floor: $N eventfd round trips, one at a time; server CPU per round trip =="
printf '%-34s %10s %12s\n' server 'CPU us' 'wall us'
printf '%-34s %10s %12s\n' 'C, epoll_wait + read + write' "$C_CPU" "$C_WALL"
printf '%-34s %10s %12s\n' 'Node, native Poller, empty callback' "$NODE_CPU" "$NODE_WALL"
awk -v c="$C_CPU" -v n="$NODE_CPU" 'BEGIN { printf "Node / C CPU: %.2f\n", n / c }'
