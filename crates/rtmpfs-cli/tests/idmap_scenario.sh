# Idmapped mount scenario. $1: the filesystem's own mount; $2: an idmapped bind mount of it
# whose user namespace maps ids 0 and 1000 to each other. Prints one line per step.
set -u
r=$1
i=$2
ids() { for f in "$@"; do stat -c '%u %g %a %n' "$f" 2>&1 | sed "s#$r#R#; s#$i#I#"; done; }
try() { if "$@" >/dev/null 2>&1; then echo "ok: $*"; else echo "denied: $*"; fi | sed "s#$r#R#g; s#$i#I#g"; }
touch "$r/pre"; chown 1000:1000 "$r/pre"; touch "$r/pre0"
ids "$r/pre" "$r/pre0" "$i/pre" "$i/pre0"
# New inodes through the idmapped mount are owned by the mapped ids.
touch "$i/new"; mkdir "$i/nd"; mknod "$i/fifo" p; ln -s x "$i/sl"; mkdir "$i/nd/sub"
ids "$r/new" "$i/new" "$r/nd" "$i/nd" "$r/fifo" "$i/fifo" "$r/sl" "$i/sl" "$r/nd/sub" "$i/nd/sub"
try chown 0:0 "$i/new"
ids "$r/new" "$i/new"
try chown 1000:1000 "$i/new"
ids "$r/new" "$i/new"
# An ordinary user: 1000 through the mount is 0 on the filesystem.
chmod 1777 "$r"
try setpriv --reuid=1000 --regid=1000 --clear-groups touch "$i/byuser"
ids "$r/byuser" "$i/byuser"
try setpriv --reuid=1000 --regid=1000 --clear-groups sh -c "echo x >> $i/pre0"
try setpriv --reuid=1000 --regid=1000 --clear-groups sh -c "echo x >> $i/pre"
try setpriv --reuid=0 --regid=0 --clear-groups sh -c "echo x >> $i/pre"
# Root keeps set-id bits when it changes data through the mount (CAP_FSETID).
touch "$r/s"; chmod 6755 "$r/s"
sh -c "echo data >> $i/s"; fallocate -l 8192 "$i/s"; truncate -s 100 "$i/s"
ids "$r/s"
# A default ACL's named user is mapped too.
mkdir "$r/acl"; setfacl -d -m u:1000:rwx "$r/acl"
touch "$i/acl/f"
getfacl -n "$r/acl/f" 2>&1 | grep -v '^#'
getfacl -n "$i/acl/f" 2>&1 | grep -v '^#'
try setfacl -m u:0:r "$i/acl/f"
getfacl -n "$r/acl/f" 2>&1 | grep -v '^#'
