/**
 * virtiofsd's `--xattrmap`: rules that rename, pass, hide or refuse extended attribute names
 * between guest and host, e.g. to keep a guest's `security.selinux` apart from the host's, or to
 * store a guest's `trusted.*` as `user.virtiofs.trusted.*` where the daemon may not write
 * `trusted.*` (virtiofsd's doc/xattr-mapping.md).
 *
 * The map is a series of rules, each `<d>type<d>scope<d>key<d>prepend<d>` where the delimiter `<d>`
 * is the rule's first character, rules separated by optional white space:
 *
 *   type   prefix: a guest name matching `key` goes to the host with `prepend` before it; a host
 *                  name matching `prepend` is shown to the guest without it
 *          ok: passes unchanged; bad: the guest gets EPERM, the host name is hidden;
 *          unsupported: the guest gets ENOTSUP, the host name is hidden
 *   scope  client (the guest's get/set/removexattr names, matched against `key`), server (the
 *          host's listxattr names, matched against `prepend`), or all
 *
 * The first rule that matches decides. `<d>map<d>key<d>prepend<d>`, which may only come last, is
 * shorthand for: prefix all key prepend, then (with a key) bad all prepend key and ok all, or
 * (without one) bad all. Where no rule matches, a guest name is refused (EPERM) and a host name
 * hidden: virtiofsd aborts there, so a map should end with a rule for everything.
 *
 * A map onto user.* cannot hold the names of symlinks and special files: Linux allows user.*
 * xattrs on regular files and directories only (EPERM otherwise, as through virtiofsd), so
 * overlayfs's on whiteouts and symlinks fail there; `trusted.virtiofs.` as the prefix keeps them.
 *
 * Renaming `security.capability` needs no work of the daemon's here: without KILLPRIV_V2 (never
 * offered) the guest kernel removes a file's capabilities itself, through REMOVEXATTR of the name
 * it knows, on writes, truncation and CHOWN.
 */
import { UsageError } from '../../base/index.js';
import { Errno, FsError } from '../types.js';

type RuleType = 'prefix' | 'ok' | 'bad' | 'unsupported';

interface Rule {
  type: RuleType;
  client: boolean;
  server: boolean;
  key: Buffer;
  prepend: Buffer;
}

const TYPES = ['prefix', 'ok', 'bad', 'unsupported', 'map'] as const;
const SCOPES = { all: [true, true], client: [true, false], server: [false, true] } as const;

export class XattrMap {
  private constructor(private readonly rules: readonly Rule[]) {}

  /** The rules of a `--xattrmap` value, or a usage error naming the rule at fault (from 1). */
  static parse(spec: string): XattrMap {
    const rules: Rule[] = [];
    let i = 0;
    let n = 0;
    const fail = (why: string): never => {
      throw new UsageError(`invalid value for '--xattrmap': rule ${n}: ${why}`);
    };
    for (;;) {
      while (i < spec.length && /\s/.test(spec.charAt(i))) i++;
      if (i >= spec.length) break;
      n++;
      const delimiter = spec.charAt(i++);
      const field = (): string => {
        const end = spec.indexOf(delimiter, i);
        if (end < 0) fail(`no closing '${delimiter}'`);
        const f = spec.slice(i, end);
        i = end + 1;
        return f;
      };
      const type = field();
      if (!(TYPES as readonly string[]).includes(type)) fail(`type '${type}' is not one of ${TYPES.join(', ')}`);
      if (type === 'map') {
        const key = Buffer.from(field());
        const prepend = Buffer.from(field());
        if (spec.slice(i).trim() !== '') fail('a map rule must be the last one');
        const all = { client: true, server: true };
        rules.push({ type: 'prefix', ...all, key, prepend });
        if (key.length > 0) {
          // Host names with the key but not the prefix stay hidden, and the guest may not reach
          // the prefixed names directly.
          rules.push({ type: 'bad', ...all, key: prepend, prepend: key });
          rules.push({ type: 'ok', ...all, key: Buffer.alloc(0), prepend: Buffer.alloc(0) });
        } else {
          rules.push({ type: 'bad', ...all, key: Buffer.alloc(0), prepend: Buffer.alloc(0) });
        }
        break;
      }
      const scope = field();
      if (!Object.hasOwn(SCOPES, scope)) fail(`scope '${scope}' is not one of all, client, server`);
      const [client, server] = SCOPES[scope as keyof typeof SCOPES];
      rules.push({ type: type as RuleType, client, server, key: Buffer.from(field()), prepend: Buffer.from(field()) });
    }
    if (rules.length === 0) throw new UsageError("invalid value for '--xattrmap': no rules");
    return new XattrMap(rules);
  }

  /** The host name for a name the guest uses; EPERM (bad, or no rule) or ENOTSUP (unsupported). */
  toHost(name: Uint8Array): Buffer {
    const n = Buffer.from(name.buffer, name.byteOffset, name.byteLength);
    const r = this.rules.find((x) => x.client && startsWith(n, x.key));
    switch (r?.type) {
      case 'prefix':
        return Buffer.concat([(r as Rule).prepend, n]);
      case 'ok':
        return n;
      case 'unsupported':
        throw new FsError(Errno.EOPNOTSUPP, 'the xattr map does not support this name');
      default:
        throw new FsError(Errno.EPERM, r === undefined ? 'no xattr map rule for this name' : 'the xattr map denies this name');
    }
  }

  /** The name the guest sees for a host name, or undefined when it is hidden. */
  toGuest(name: Uint8Array): Uint8Array | undefined {
    const r = this.rules.find((x) => x.server && startsWith(name, x.prepend));
    // A host name that is the prefix alone would be an empty name: hidden.
    if (r?.type === 'prefix') return name.length > r.prepend.length ? name.subarray(r.prepend.length) : undefined;
    return r?.type === 'ok' ? name : undefined;
  }
}

function startsWith(name: Uint8Array, prefix: Buffer): boolean {
  return name.length >= prefix.length && prefix.equals(name.subarray(0, prefix.length));
}
