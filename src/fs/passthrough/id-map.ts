/**
 * virtiofsd's `--translate-uid` / `--translate-gid`: user and group ids translated between guest and
 * host inside the daemon (no user namespace), e.g. to let an unprivileged daemon create every file
 * as itself while the guest sees its own ids. One rule per option value, `TYPE:...`:
 *
 *   guest:G:H:N         guest ids [G, G+N) become host ids [H, H+N)      (guest to host only)
 *   host:H:G:N          host ids [H, H+N) become guest ids [G, G+N)      (host to guest only)
 *   squash-guest:G:H:N  guest ids [G, G+N) all become host id H
 *   squash-host:H:G:N   host ids [H, H+N) all become guest id G
 *   forbid-guest:G:N    guest ids [G, G+N) may not be given to a file (EPERM)
 *   map:G:H:N           guest:G:H:N and host:H:G:N together
 *
 * Ids no rule names pass unchanged. The source ranges of one direction must not overlap. Guest to
 * host applies to what the guest gives a file (the owner of what it creates, CHOWN); host to guest
 * to the attributes it is shown. Creating calls run as the translated host ids, so a guest root
 * made a host user other than root creates as that user: the host's permission checks apply and
 * the daemon's privileges do not (no device nodes but whiteouts; a guest test with a whole-range
 * map found overlayfs's mount refused on such a share too) — what an unprivileged daemon, the use
 * these options are for, gets anyway.
 */
import { UsageError } from '../../base/index.js';
import { Errno, FsError } from '../types.js';

const ID_LIMIT = 2 ** 32;

interface Rule {
  /** First id of the source range and its length. */
  from: number;
  count: number;
  /** First id of the target range (`squash`: the one target id); undefined: forbidden. */
  to: number | undefined;
  squash: boolean;
  /** The option value, for messages. */
  spec: string;
}

export class IdTranslation {
  private constructor(
    private readonly toHostRules: readonly Rule[],
    private readonly toGuestRules: readonly Rule[],
  ) {}

  /** No translation: every id as it is. */
  static readonly IDENTITY = new IdTranslation([], []);

  /** The rules of the option values given for `option` (`--translate-uid`), or a usage error naming the wrong one. */
  static parse(specs: readonly string[], option: string): IdTranslation {
    const toHost: Rule[] = [];
    const toGuest: Rule[] = [];
    for (const spec of specs) {
      const [type, ...fields] = spec.split(':');
      const numbers = fields.map((f) => (/^\d+$/.test(f) ? Number(f) : NaN));
      const want = type === 'forbid-guest' ? 2 : 3;
      if (numbers.length !== want || numbers.some((n) => !Number.isSafeInteger(n))) {
        throw new UsageError(`invalid value '${spec}' for '${option}': expected ${type === 'forbid-guest' ? 'forbid-guest:<base>:<count>' : '<type>:<source base>:<target base>:<count>'} with decimal ids`);
      }
      const [from, second, third] = numbers as [number, number, number | undefined];
      const count = type === 'forbid-guest' ? second : (third as number);
      const to = type === 'forbid-guest' ? undefined : second;
      if (count < 1 || from + count > ID_LIMIT || (to !== undefined && to >= ID_LIMIT)) {
        throw new UsageError(`invalid value '${spec}' for '${option}': the count must be at least 1 and every id below 2^32`);
      }
      const squash = type === 'squash-guest' || type === 'squash-host';
      if (!squash && to !== undefined && to + count > ID_LIMIT) throw new UsageError(`invalid value '${spec}' for '${option}': the target range passes 2^32`);
      const rule = { from, count, to, squash, spec };
      switch (type) {
        case 'guest':
        case 'squash-guest':
        case 'forbid-guest':
          toHost.push(rule);
          break;
        case 'host':
        case 'squash-host':
          toGuest.push(rule);
          break;
        case 'map':
          toHost.push(rule);
          toGuest.push({ from: to as number, count, to: from, squash: false, spec });
          break;
        default:
          throw new UsageError(`invalid value '${spec}' for '${option}': the type must be one of guest, host, squash-guest, squash-host, forbid-guest, map`);
      }
    }
    for (const [rules, side] of [[toHost, 'guest'], [toGuest, 'host']] as const) {
      const sorted = [...rules].sort((a, b) => a.from - b.from);
      for (let i = 1; i < sorted.length; i++) {
        const a = sorted[i - 1] as Rule;
        const b = sorted[i] as Rule;
        if (a.from + a.count > b.from) throw new UsageError(`'${option}': the ${side} id ranges of '${a.spec}' and '${b.spec}' overlap`);
      }
    }
    return new IdTranslation(toHost, toGuest);
  }

  /** The host id for a guest id the guest gives a file; EPERM for a forbidden one. */
  toHost(id: number): number {
    const r = find(this.toHostRules, id);
    if (r === undefined) return id;
    if (r.to === undefined) throw new FsError(Errno.EPERM, `id ${id} is forbidden to the guest (${r.spec})`);
    return r.squash ? r.to : r.to + (id - r.from);
  }

  /** The guest id the guest is shown for a host id. */
  toGuest(id: number): number {
    const r = find(this.toGuestRules, id);
    if (r === undefined) return id;
    return r.squash ? (r.to as number) : (r.to as number) + (id - r.from);
  }
}

function find(rules: readonly Rule[], id: number): Rule | undefined {
  for (const r of rules) if (id >= r.from && id - r.from < r.count) return r;
  return undefined;
}
