# POSIX conformance steps for a read-write virtio-fs share, run inside the test guest (busybox ash)
# by test/integration/passthrough-guest.test.ts on each mount in turn, the same steps in the same
# order. Usage: posix_steps DIR (DIR empty and owned by root; the caller's cwd is changed).
#
# Every step prints exactly one line:  LABEL | STATUS | OUTPUT
# with OUTPUT the command's stdout and stderr joined by ';' (busybox commands name the relative
# path they failed on and strerror; /bin/fsop, test/guest/fsop.c, prints "ok …" or
# "ENAME (strerror)"). Paths are relative, so nothing names the mount point; inode numbers, atimes
# and ctimes are never printed, and every mtime printed was set explicitly: the output depends on
# neither the mount nor the clock.
#
# Users: the guest runs as root; `fsop as UID GID[,GROUPS] …` switches to another user for one
# call. uid 1000 and gid 1000 are "the user", 2000 "another user", gid 50 a shared group.

posix_steps() {
  cd "$1" || return 1
  umask 022

  # --- regular files: create, write, read, truncate, open flags ---------------------------------
  s create.excl fsop open f creat,excl,wronly 0644
  s create.excl-again fsop open f creat,excl,wronly 0644
  s create.stat fsop stat f
  s write fsop write f hello
  s append fsop append f ,world
  s read fsop read f
  s shell.redirect sh -c 'echo shell > g && cat g'
  s cat.missing cat nope
  s open.trunc fsop open g wronly,trunc
  s open.trunc.stat fsop stat g
  s open.missing fsop open nope rdonly
  s open.dir-for-writing fsop open . wronly
  s open.file-as-directory fsop open f directory
  s open.creat-existing fsop open f creat,wronly 0600
  s open.creat-existing.mode fsop stat f
  s truncate.grow truncate -s 100 f
  s truncate.grow.stat fsop stat f
  s truncate.shrink fsop truncate f 3
  s truncate.shrink.read fsop read f
  s ftruncate fsop ftruncate f 10
  s ftruncate.stat fsop stat f
  s truncate.dir fsop truncate . 0
  s truncate.negative fsop truncate f -1
  s pwrite.far fsop pwrite f 1048576 tail
  s pwrite.far.stat fsop stat f
  s seek.data fsop seek f data 0
  s seek.hole fsop seek f hole 0
  s seek.data-after-hole fsop seek f data 4096
  s seek.beyond-end fsop seek f data 2000000
  s fallocate.extend fsop fallocate f 0 0 2097152
  s fallocate.extend.stat fsop stat f
  s fallocate.keep-size fsop fallocate f keep 2097152 65536
  s fallocate.keep-size.stat fsop stat f
  s fallocate.punch fsop fallocate f punch 0 4096
  s fallocate.punch.read sh -c 'od -An -c -N 8 f'
  s fallocate.zero-range fsop fallocate f zero 4096 4096
  s copy-file-range.prep sh -c 'echo 0123456789abcdef > g2src'
  s copy-file-range.copy fsop copy g2src g2 10
  s copy-file-range.read fsop read g2
  s mmap.write fsop mmap-write g2src 4 MMAP
  s mmap.read fsop read g2src
  s fsync fsop fsync g2src
  s direct-io fsop direct-io dio
  s direct-io.reread sh -c 'echo 3 > /proc/sys/vm/drop_caches && od -An -tu1 -j 4096 -N 4 dio'
  s big.write sh -c 'seq 1 200000 > big && sha256sum big'
  s big.stat fsop stat big
  s big.reread sh -c 'echo 3 > /proc/sys/vm/drop_caches && sha256sum big'
  s big.dd sh -c 'dd if=big of=big2 bs=65536 conv=fsync 2>/dev/null && cmp big big2 && echo same'
  s exec.prep sh -c 'mkdir exe && cp /bin/busybox exe/busybox'
  s exec.run exe/busybox echo executed from the share
  s unlinked.prep sh -c 'echo still-readable > u'
  s unlinked.fstat fsop fstat-unlinked u
  s unlinked.gone fsop stat u

  # --- names ----------------------------------------------------------------------------------
  n255=$(printf '%0255d' 0)
  s name.255 fsop open "$n255" creat,wronly
  s name.256 fsop open "${n255}1" creat,wronly
  s name.256.lookup fsop stat "${n255}1"
  s name.unicode fsop open 'ünï cødé ☃' creat,wronly
  s name.newline fsop open "$(printf 'a\nb')" creat,wronly
  s name.list fsop ls .
  s rm.names sh -c "rm -f $n255 'ünï cødé ☃' \"\$(printf 'a\\nb')\" && echo removed"

  # --- directories ----------------------------------------------------------------------------
  s mkdir fsop mkdir d 0755
  s mkdir.stat fsop stat d
  s mkdir.existing fsop mkdir d 0755
  s mkdir.busybox-existing mkdir d
  s mkdir.over-file fsop mkdir f 0755
  s mkdir.umask027 fsop umask 027 mkdir m 0777
  s mkdir.umask027.stat fsop stat m
  s mkdir.sticky-mode fsop umask 0 mkdir t 1777
  s mkdir.sticky-mode.stat fsop stat t
  s mkdir.parents mkdir -p a/b/c
  s mkdir.parents.nlink fsop stat a
  s mkdir.missing-parent fsop mkdir x/y 0755
  s mkdir.under-file fsop mkdir f/x 0755
  s rmdir.non-empty rmdir a
  s rmdir.non-empty.fsop fsop rmdir a
  s rmdir.file fsop rmdir f
  s rmdir.dot fsop rmdir .
  s rmdir.missing fsop rmdir nope
  s rmdir.leaf fsop rmdir a/b/c
  s rmdir.leaf.nlink fsop stat a/b
  s unlink.dir fsop unlink d
  s unlink.missing fsop unlink nope
  s unlink.busybox-dir rm d
  s readdir.many sh -c 'mkdir many && i=0; while [ $i -lt 300 ]; do : > many/f$i; i=$((i + 1)); done; ls many | wc -l; ls -a many | head -n 3'
  s readdir.many.rm sh -c 'rm -r many && echo gone'
  s readdir.types.prep sh -c 'mkdir types && : > types/r && mkdir types/d && ln -s r types/l && mkfifo types/p'
  s readdir.types fsop ls types
  s readdir.dot-entries sh -c 'ls -a types | head -n 2'

  # --- rename ---------------------------------------------------------------------------------
  s rename.prep sh -c 'echo r1 > r1 && echo r2 > r2 && mkdir -p rd1/sub rd2 rd3 && echo in > rd3/x'
  s rename.file fsop rename r1 r1b
  s rename.file.old fsop stat r1
  s rename.file.new fsop read r1b
  s rename.over-file fsop rename r1b r2
  s rename.over-file.read fsop read r2
  s rename.over-file.gone fsop stat r1b
  s rename.same-name fsop rename r2 r2
  s rename.dir-over-empty-dir fsop rename rd1 rd2
  s rename.dir-over-empty-dir.list fsop ls rd2
  s rename.dir-over-nonempty-dir fsop rename rd2 rd3
  s rename.mv-T-over-nonempty-dir mv -T rd2 rd3
  s rename.file-over-dir fsop rename r2 rd3
  s rename.dir-over-file fsop rename rd3 r2
  s rename.into-own-subdir fsop rename rd2 rd2/sub/x
  s rename.missing fsop rename nope nope2
  s rename.into-missing-dir fsop rename r2 nodir/r2
  s rename.noreplace-existing fsop rename r2 g noreplace
  s rename.noreplace-new fsop rename r2 r3 noreplace
  s rename.exchange-file-dir fsop rename r3 rd3 exchange
  s rename.exchange.r3 fsop stat r3
  s rename.exchange.rd3 fsop read rd3
  s rename.exchange-missing fsop rename r3 nope exchange
  s rename.whiteout fsop rename rd3 r4 whiteout
  s rename.whiteout.source fsop stat rd3
  s rename.whiteout.target fsop read r4
  s rename.hardlink-onto-itself sh -c 'echo h > h1 && ln h1 h2 && fsop rename h1 h2 && ls h1 h2'
  s rename.hardlink-onto-itself.nlink fsop stat h2
  s rename.across-dirs.prep sh -c 'mkdir -p p1/c p2'
  s rename.across-dirs fsop rename p1/c p2/c
  s rename.across-dirs.old-parent fsop stat p1
  s rename.across-dirs.new-parent fsop stat p2
  s rename.across-dirs.dotdot sh -c 'cd p2/c && ls .. | tr "\n" " "'
  s rename.busybox-mv-into-dir sh -c 'mkdir mvd && mv r4 mvd && ls mvd'

  # --- hard links -----------------------------------------------------------------------------
  s link fsop link g l1
  s link.nlink fsop stat g
  s link.other-name fsop stat l1
  s link.existing fsop link g l1
  s link.dir.prep mkdir d2
  s link.dir fsop link d2 l2
  s link.missing fsop link nope l3
  s link.busybox ln g l4
  s link.busybox.nlink fsop stat l4
  s link.unlink-one fsop unlink l1
  s link.unlink-one.nlink fsop stat g
  s link.symlink-itself sh -c 'ln -s g sl && fsop link sl sl-hard && fsop stat sl-hard'

  # --- symlinks -------------------------------------------------------------------------------
  s symlink fsop symlink g s1
  s symlink.stat fsop stat s1
  s symlink.readlink fsop readlink s1
  s symlink.busybox-readlink readlink s1
  s symlink.follow cat s1
  s symlink.existing fsop symlink g s1
  s symlink.dangling fsop symlink nowhere s2
  s symlink.dangling.cat cat s2
  s symlink.loop fsop symlink s3 s3
  s symlink.loop.cat cat s3
  s symlink.absolute fsop symlink /bin/busybox s4
  s symlink.absolute.follow stat -L -c %F s4
  s symlink.escape fsop symlink ../../../../../../etc/damselfly s5
  s symlink.escape.list sh -c 'ls s5/ | head -n 1'
  s symlink.long-target fsop symlink "$(printf '%04095d' 0)" s6
  s symlink.long-target.readlink fsop readlink s6
  s symlink.too-long-target fsop symlink "$(printf '%04096d' 0)" s7
  s readlink.file fsop readlink g
  s readlink.busybox-file readlink g
  s open.nofollow-symlink fsop open s1 rdonly,nofollow
  s symlink.lchown fsop lchown s1 1000 1000
  s symlink.lchown.stat fsop stat s1
  s symlink.lchown.target fsop stat g
  s symlink.utimens fsop utimens s1 omit omit 1234567890 5
  s symlink.utimens.mtime fsop mtime s1
  s symlink.chmod-follows chmod 0640 s1
  s symlink.chmod-follows.target fsop stat g

  # --- modes and owners -----------------------------------------------------------------------
  s chmod fsop chmod f 0600
  s chmod.stat fsop stat f
  s chmod.suid fsop chmod f 4755
  s chmod.suid.stat fsop stat f
  s chmod.busybox-symbolic chmod g+w,o-r f
  s chmod.busybox-symbolic.stat fsop stat f
  s chmod.missing chmod 0644 nope
  s chown fsop chown f 1000 1000
  s chown.clears-suid fsop stat f
  s chown.busybox chown 2000:50 g
  s chown.busybox.stat fsop stat g
  s chown.group-only fsop chown g -1 1000
  s chown.group-only.stat fsop stat g
  s chown.as-user fsop as 1000 1000 chown f 2000 2000
  s chmod.as-non-owner fsop as 2000 2000 chmod f 0777
  s chmod.as-owner fsop as 1000 1000 chmod f 0640
  s chmod.as-owner.stat fsop stat f
  s chgrp.as-owner-not-member fsop as 1000 1000 chown f -1 50
  s chgrp.as-owner-member fsop as 1000 1000,50 chown f -1 50
  s chgrp.as-owner-member.stat fsop stat f
  s suid.prep sh -c 'echo x > sx && chmod 6777 sx'
  s suid.write-as-user fsop as 1000 1000 append sx more
  s suid.write-as-user.stat fsop stat sx
  s suid.truncate-prep fsop chmod sx 6777
  s suid.truncate-as-user fsop as 1000 1000 truncate sx 1
  s suid.truncate-as-user.stat fsop stat sx
  s suid.write-as-root-prep fsop chmod sx 6777
  s suid.write-as-root fsop append sx root
  s suid.write-as-root.stat fsop stat sx
  s access.root-read fsop access f r
  s access.root-exec-none fsop access g x
  s access.user-read-0640 fsop as 2000 2000 access f r
  s access.user-write-own fsop as 1000 1000 access f w
  s open.as-user-denied fsop as 2000 2000 open f rdonly
  s create.as-user fsop as 1000 1000 open t/u1 creat,wronly 0644
  s create.as-user.stat fsop stat t/u1
  s mkdir.as-user fsop as 1000 1000 mkdir t/ud 0777
  s mkdir.as-user.stat fsop stat t/ud
  s symlink.as-user fsop as 1000 1000 symlink u1 t/us
  s symlink.as-user.stat fsop stat t/us
  s mknod.as-user-fifo fsop as 1000 1000 mknod t/up p 0644 0 0
  s mknod.as-user-fifo.stat fsop stat t/up
  s mknod.as-user-char fsop as 1000 1000 mknod t/uc c 0644 1 3
  s link.as-user fsop as 1000 1000 link t/u1 t/ul
  s sticky.unlink-other-user fsop as 2000 2000 unlink t/u1
  s sticky.rename-other-user fsop as 2000 2000 rename t/u1 t/u2
  s sticky.unlink-owner fsop as 1000 1000 unlink t/u1
  s create.mode-0-as-user fsop as 1000 1000 create-write t/zero 0000 written-anyway
  s create.mode-0-as-user.stat fsop stat t/zero
  s create.mode-0-as-user.reopen fsop as 1000 1000 open t/zero wronly
  s create.in-root-owned-dir-as-user fsop as 1000 1000 open d2/nope creat,wronly
  s sgid.prep sh -c 'mkdir sg && chown 0:50 sg && chmod 2777 sg'
  s sgid.create-file fsop open sg/file creat,wronly 0644
  s sgid.create-file.stat fsop stat sg/file
  s sgid.mkdir fsop mkdir sg/dir 0755
  s sgid.mkdir.stat fsop stat sg/dir
  s sgid.create-as-non-member fsop as 1000 1000 umask 0 open sg/f2 creat,wronly 02775
  s sgid.create-as-non-member.stat fsop stat sg/f2
  s group.prep sh -c 'mkdir gd && chown 0:50 gd && chmod 0770 gd'
  s group.create-primary fsop as 1000 50 open gd/p creat,wronly
  s group.create-primary.stat fsop stat gd/p
  s group.create-supplementary fsop as 1000 1000,50 open gd/s creat,wronly
  s group.mkdir-supplementary fsop as 1000 1000,50 mkdir gd/sd 0755
  s group.read-supplementary fsop as 2000 2000,50 ls gd

  # --- times ----------------------------------------------------------------------------------
  s touch.date touch -d '2001-02-03 04:05:06' f
  s touch.date.mtime stat -c %Y f
  s touch.create touch -d '2002-03-04 05:06:07' newfile
  s touch.create.mtime fsop mtime newfile
  s touch.dir touch -d '2003-04-05 06:07:08' d2
  s touch.dir.mtime stat -c %Y d2
  s touch.before-1970 touch -d '1960-01-02 03:04:05' old-file
  s touch.before-1970.mtime stat -c %Y old-file
  s utimens.nsec fsop utimens g 1 500 1000000000 123456789
  s utimens.nsec.mtime fsop mtime g
  s utimens.omit-mtime fsop utimens g 2 0 omit omit
  s utimens.omit-mtime.mtime fsop mtime g
  s utimens.as-non-owner fsop as 1000 1000 utimens newfile 3 0 3 0
  s utimens.missing fsop utimens nope 3 0 3 0
  s touch.busybox-ref sh -c 'touch -r newfile g3 && stat -c %Y g3'
  s mtime.after-write sh -c 'fsop utimens g3 omit omit 1000 0 >/dev/null && echo x > g3 && [ "$(stat -c %Y g3)" -gt 1000 ] && echo updated'

  # --- device nodes, FIFOs, sockets -----------------------------------------------------------
  s mknod.whiteout mknod wh c 0 0
  s mknod.whiteout.stat fsop stat wh
  s mknod.whiteout-fsop fsop mknod wh2 c 0000 0 0
  s mknod.whiteout-fsop.stat fsop stat wh2
  s mknod.fifo mkfifo fifo
  s mknod.fifo.stat fsop stat fifo
  s mknod.fifo-io sh -c '(echo through-the-fifo > fifo &) ; cat fifo'
  s mknod.char fsop mknod null c 0666 1 3
  s mknod.char.stat fsop stat null
  s mknod.char-io sh -c 'echo discarded > null && wc -c < null'
  s mknod.block fsop mknod loop b 0660 7 0
  s mknod.block.stat fsop stat loop
  s mknod.socket fsop mknod sock s 0755 0 0
  s mknod.socket.stat fsop stat sock
  s mknod.regular fsop mknod reg f 0600 0 0
  s mknod.regular.stat fsop stat reg
  s mknod.existing fsop mknod fifo p 0644 0 0
  s mknod.fifo.truncate fsop truncate fifo 0
  s mknod.fifo.chown fsop chown fifo 1000 1000
  s mknod.fifo.chown.stat fsop stat fifo
  s mknod.whiteout.chmod fsop chmod wh 0600
  s mknod.whiteout.chmod.stat fsop stat wh
  s mknod.list fsop ls .

  # --- extended attributes --------------------------------------------------------------------
  s xattr.set fsop setxattr g user.one 1
  s xattr.get fsop getxattr g user.one
  s xattr.set-create-existing fsop setxattr g user.one 2 create
  s xattr.set-replace fsop setxattr g user.one 2 replace
  s xattr.set-replace-missing fsop setxattr g user.two 2 replace
  s xattr.set-create fsop setxattr g user.two 2 create
  s xattr.get-missing fsop getxattr g user.nope
  s xattr.list fsop listxattr g
  s xattr.remove fsop removexattr g user.two
  s xattr.remove-missing fsop removexattr g user.two
  s xattr.empty-value fsop setxattr g user.empty ''
  s xattr.empty-value.get fsop getxattr g user.empty
  s xattr.large-value fsop setxattr g user.large "$(printf '%03000d' 7)"
  s xattr.large-value.size sh -c 'fsop getxattr g user.large | wc -c'
  s xattr.dir fsop setxattr d2 user.dir yes
  s xattr.dir.get fsop getxattr d2 user.dir
  s xattr.trusted-opaque fsop setxattr d2 trusted.overlay.opaque y
  s xattr.trusted-opaque.get fsop getxattr d2 trusted.overlay.opaque
  s xattr.trusted.list fsop listxattr d2
  s xattr.security fsop setxattr g security.damselfly test
  s xattr.capability fsop setxattr-hex g security.capability 0100000200200000000000000000000000000000
  s xattr.capability.get fsop getxattr g security.capability
  s xattr.capability.list fsop listxattr g
  s xattr.capability.after-write sh -c 'fsop append g more >/dev/null && fsop listxattr g'
  s xattr.posix-acl fsop setxattr-hex g system.posix_acl_access 0200000001000600ffffffff04000400ffffffff10000400ffffffff20000400ffffffff
  s xattr.posix-acl.get fsop getxattr g system.posix_acl_access
  s xattr.unknown-namespace fsop setxattr g bogus.name x
  s xattr.user-on-symlink fsop lsetxattr s1 user.x 1
  s xattr.user-on-fifo fsop setxattr fifo user.x 1
  s xattr.trusted-on-symlink fsop lsetxattr s1 trusted.overlay.redirect /x
  s xattr.trusted-on-symlink.get fsop lgetxattr s1 trusted.overlay.redirect
  s xattr.symlink.list fsop llistxattr s1
  s xattr.symlink.remove fsop lremovexattr s1 trusted.overlay.redirect
  s xattr.follows-symlink fsop getxattr s1 user.one
  s xattr.trusted-on-whiteout fsop setxattr wh trusted.overlay.x 1
  s xattr.trusted-on-whiteout.list fsop listxattr wh
  s xattr.as-user-trusted fsop as 1000 1000 setxattr t/ud trusted.x 1
  s xattr.as-user-own-file fsop as 1000 1000 setxattr t/ud user.x 1
  s xattr.as-user-other-file fsop as 2000 2000 setxattr t/ud user.y 1
  s xattr.as-user-get fsop as 2000 2000 getxattr t/ud user.x

  # --- overlayfs with its upper and work directories on the share (a Kata container rootfs) ------
  s overlay.prep sh -c 'mkdir -p ov/lower/dir ov/lower/keep ov/upper ov/work ov/merged && echo low > ov/lower/a && echo gone > ov/lower/b && echo x > ov/lower/dir/x && echo k > ov/lower/keep/k'
  s overlay.mount mount -t overlay overlay -o lowerdir=ov/lower,upperdir=ov/upper,workdir=ov/work,index=off ov/merged
  s overlay.copy-up sh -c 'echo up >> ov/merged/a && cat ov/merged/a'
  s overlay.whiteout rm ov/merged/b
  s overlay.opaque-dir sh -c 'rm -r ov/merged/dir && mkdir ov/merged/dir && echo new > ov/merged/dir/y'
  s overlay.new-file sh -c 'echo n > ov/merged/keep/n'
  s overlay.metadata-copy-up chmod 0600 ov/merged/keep/k
  s overlay.rename-copied-up mv ov/merged/a ov/merged/a2
  s overlay.rename-lower-dir mv ov/merged/keep ov/merged/keep2
  s overlay.view sh -c 'cd ov/merged && find . | sort | tr "\n" " "'
  s overlay.umount umount ov/merged
  s overlay.upper sh -c 'cd ov/upper && find . | sort | tr "\n" " "'
  s overlay.upper.whiteout fsop stat ov/upper/b
  s overlay.upper.opaque fsop getxattr ov/upper/dir trusted.overlay.opaque
  s overlay.upper.xattr-names sh -c 'cd ov/upper && for f in $(find . -mindepth 1 | sort); do echo "$f $(fsop llistxattr $f)"; done'
  s overlay.remount mount -t overlay overlay -o lowerdir=ov/lower,upperdir=ov/upper,workdir=ov/work,index=off ov/merged
  s overlay.remount.view sh -c 'cd ov/merged && find . | sort | tr "\n" " " && cat a2 dir/y keep2/n && stat -c %a keep2/k'
  s overlay.remount.umount umount ov/merged

  # --- the file system ------------------------------------------------------------------------
  s statfs fsop statfs .
  s ioctl.getflags-file fsop getflags f
  s ioctl.getflags-dir fsop getflags d2
  s statfs.busybox stat -f -c '%l' .
  s final.list fsop ls .
  s final.du sh -c 'find . | sort | head -n 400 | wc -l'
}

# POSIX ACL steps for a share served with POSIX ACLs (virtiofsd --posix-acl): the guest's kernel
# enforces them, the host keeps them. Usage: acl_steps DIR (as posix_steps). An ACL is written in
# its xattr form (acl HEX-ENTRY...): version 2, then per entry tag u16, perm u16, id u32
# (little-endian; id ffffffff for the entries without one), sorted by tag and id.
acl() {
  printf '02000000'
  printf '%s' "$@"
}
U_RW=01000600ffffffff U_RWX=01000700ffffffff
N2000_R=02000400d0070000 N2000_RWX=02000700d0070000 N1000_R=02000400e8030000
G_NONE=04000000ffffffff G_RX=04000500ffffffff G_RWX=04000700ffffffff G3000_RW=08000600b80b0000
M_R=10000400ffffffff M_RW=10000600ffffffff M_RWX=10000700ffffffff
O_NONE=20000000ffffffff O_RX=20000500ffffffff

acl_steps() {
  cd "$1" || return 1
  umask 022
  # --- an access ACL: a named user may read a file its mode denies him ---------------------------
  s acl.prep sh -c 'echo secret > f && chmod 0600 f'
  s acl.denied-before fsop as 2000 2000 read f
  s acl.set fsop setxattr-hex f system.posix_acl_access "$(acl $U_RW $N2000_R $G_NONE $M_R $O_NONE)"
  s acl.set.stat fsop stat f
  s acl.get fsop getxattr f system.posix_acl_access
  s acl.list fsop listxattr f
  s acl.read-as-named-user fsop as 2000 2000 read f
  s acl.write-as-named-user fsop as 2000 2000 write f x
  s acl.read-as-other-user fsop as 2001 2001 read f
  s acl.chmod-sets-mask fsop chmod f 0600
  s acl.chmod-sets-mask.get fsop getxattr f system.posix_acl_access
  s acl.chmod-sets-mask.read-as-named-user fsop as 2000 2000 read f
  s acl.named-group fsop setxattr-hex f system.posix_acl_access "$(acl $U_RW $G_NONE $G3000_RW $M_RW $O_NONE)"
  s acl.named-group.write-as-member fsop as 2001 2001,3000 write f member
  s acl.named-group.write-as-non-member fsop as 2001 2001 write f nope
  s acl.named-group.read fsop read f
  s acl.remove fsop removexattr f system.posix_acl_access
  s acl.remove.stat fsop stat f
  s acl.remove.read-as-member fsop as 2001 2001,3000 read f
  s acl.invalid fsop setxattr-hex f system.posix_acl_access 0200000001
  s acl.invalid-version fsop setxattr-hex f system.posix_acl_access "03000000$U_RW$G_NONE$O_NONE"
  s acl.owner-only fsop as 2000 2000 setxattr-hex f system.posix_acl_access "$(acl $U_RW $G_NONE $O_NONE)"
  # --- a default ACL: what is created below it takes its mode from the ACL, not the umask --------
  s acl.default.prep mkdir d p
  s acl.default.set fsop setxattr-hex d system.posix_acl_default "$(acl $U_RWX $N2000_RWX $G_RX $M_RWX $O_RX)"
  s acl.default.get fsop getxattr d system.posix_acl_default
  s acl.default.file fsop umask 077 open d/new creat,wronly 0666
  s acl.default.file.stat fsop stat d/new
  s acl.default.file.acl fsop getxattr d/new system.posix_acl_access
  s acl.default.mkdir fsop umask 077 mkdir d/sub 0777
  s acl.default.mkdir.stat fsop stat d/sub
  s acl.default.mkdir.default fsop getxattr d/sub system.posix_acl_default
  s acl.default.mknod fsop umask 077 mknod d/fifo p 0666 0 0
  s acl.default.mknod.stat fsop stat d/fifo
  s acl.inherited.create-as-named-user fsop as 2000 2000 open d/sub/u creat,wronly 0640
  s acl.inherited.create-as-named-user.stat fsop stat d/sub/u
  s acl.inherited.create-as-named-user.acl fsop getxattr d/sub/u system.posix_acl_access
  s acl.inherited.create-as-other-user fsop as 2001 2001 open d/sub/v creat,wronly 0640
  s acl.default-only.create-as-named-user fsop as 2000 2000 open d/w creat,wronly 0640
  s acl.plain.file fsop umask 077 open p/new creat,wronly 0666
  s acl.plain.file.stat fsop stat p/new
  s acl.plain.mkdir fsop umask 077 mkdir p/sub 0777
  s acl.plain.mkdir.stat fsop stat p/sub
  s acl.default.remove fsop removexattr d system.posix_acl_default
  s acl.default.removed.file fsop umask 077 open d/after creat,wronly 0666
  s acl.default.removed.file.stat fsop stat d/after
  # --- setgid: an ACL set by a caller outside the file's group clears it, as chmod would --------
  s acl.sgid.prep sh -c 'mkdir sg && chmod 0777 sg && for x in in out; do : > sg/$x && chown 2000:50 sg/$x && chmod 2770 sg/$x; done'
  s acl.sgid.set-by-member fsop as 2000 2000,50 setxattr-hex sg/in system.posix_acl_access "$(acl $U_RWX $N1000_R $G_RWX $M_RWX $O_NONE)"
  s acl.sgid.set-by-member.stat fsop stat sg/in
  s acl.sgid.set-by-non-member fsop as 2000 2000 setxattr-hex sg/out system.posix_acl_access "$(acl $U_RWX $N1000_R $G_RWX $M_RWX $O_NONE)"
  s acl.sgid.set-by-non-member.stat fsop stat sg/out
  s acl.final.list fsop ls .
}

# Creating steps for a share served with security labels (virtiofsd --security-label), in a guest
# whose kernel runs SELinux (lsm=selinux; no policy loaded, so every new node's context is
# "unlabeled"): each creating call carries the context, the daemon sets it on the host.
# Usage: label_steps DIR (as posix_steps).
label_steps() {
  cd "$1" || return 1
  umask 022
  s label.file sh -c 'echo data > f'
  s label.dir mkdir d
  s label.dir.open-to-all chmod 0777 d
  s label.symlink ln -s f s
  s label.fifo mknod p p
  s label.whiteout mknod wh c 0 0
  s label.nested sh -c 'mkdir d/sub && echo x > d/sub/g'
  s label.as-user fsop as 1000 1000 open d/u creat,wronly 0644
  s label.hardlink ln f h
  s label.rename mv d/sub/g d/g2
  s label.existing-file fsop open f creat,wronly 0644
  s label.final.list fsop ls .
}

# s LABEL COMMAND...: runs one step and prints its line.
s() {
  _label=$1
  shift
  _out=$("$@" 2>&1)
  _rc=$?
  printf '%s | %s | %s\n' "$_label" "$_rc" "$(printf '%s' "$_out" | tr '\n' ';')"
}
