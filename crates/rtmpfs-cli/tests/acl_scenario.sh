# POSIX ACL scenario; run as root in an empty directory; prints one line per step.
# Users: 1000 owns the files; 1001 a named user; 1002 nobody in particular; 1003 a named
# group (user 1004 with primary group 1003); 2000 a group 1000 is not in.
cd "$1" || exit 2
as() { u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups -- sh -c "$*"; }
asg() { u=$1; g=$2; shift 2; setpriv --reuid="$u" --regid="$u" --groups="$g" -- sh -c "$*"; }
as1004() { setpriv --reuid=1004 --regid=1003 --clear-groups -- sh -c "$*"; }
try() { if "$@" >/dev/null 2>&1; then echo "ok: $*"; else echo "denied: $*"; fi; }
show() { for f in "$@"; do echo "$(stat -c '%A %a %u %g' "$f") $(ls -ld "$f" | cut -c11) $f"; getfacl -n "$f" 2>&1 | grep -v '^#'; done; }
umask 022
chmod 0777 .
echo data > f; chown 1000:1000 f; chmod 600 f
try as 1001 'cat f'
try setfacl -m u:1001:r f
show f
try as 1001 'cat f'
try as 1001 'echo x >> f'
try as 1002 'cat f'
try setfacl -m g:1003:rw f
try as1004 'echo x >> f'
try chmod g-w f
show f
try as1004 'echo x >> f'
try as 1001 'cat f'
try chmod 660 f
show f
try as 1000 'setfacl -m m::- f'
try as 1001 'cat f'
show f
# Only the owner or root; default ACLs only on directories.
try as 1001 'setfacl -m u:1002:r f'
try as 1000 'setfacl -d -m u:1001:r f'
try as 1000 'setfacl -b f'
show f
try as 1001 'cat f'
# An ACL equal to the mode is not stored.
touch eq; chmod 600 eq
try setfacl --set u::rwx,g::r-x,o::--x eq
show eq
# Directories: named user on search.
mkdir dx; chmod 700 dx; touch dx/in
try as 1001 'ls dx'
try setfacl -m u:1001:rx dx
try as 1001 'ls dx'
try as 1002 'ls dx'
# Default ACLs: inherited, mode masked by them, umask ignored.
mkdir dd; chmod 755 dd
try setfacl -d -m u:1001:rwx,g::rx,o::- dd
show dd
umask 077
touch dd/f; mkdir dd/sub; mknod dd/p p; ln -s f dd/l
show dd/f dd/sub dd/p dd/sub
stat -c '%a %n' dd/l
try as 1001 'echo x >> dd/f'
touch dd/sub/g; mkdir dd/sub/s2
show dd/sub/g dd/sub/s2
umask 027
touch plain; mkdir plaind
show plain plaind
try setfacl -k dd
show dd
umask 077
touch dd/after
show dd/after
# set-gid: setting an ACL by an owner outside the file's group drops it; a member keeps it.
touch sg; chown 1000:2000 sg; chmod 2770 sg
try as 1000 'setfacl -m u:1001:r sg'
show sg
chmod 2770 sg
try asg 1000 2000 'setfacl -m u:1002:r sg'
show sg
try as 1000 'setfacl -x u:1001 sg'
show sg
chmod 2770 sg
try setfacl -m u:1003:r sg
show sg
# Removing all ACLs.
try setfacl -R -b dd
show dd dd/f dd/sub
