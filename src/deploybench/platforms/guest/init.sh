#!/bin/busybox sh
# deploybench guest init (PID 1 in the initramfs). It builds the guest's root file system
# without any disk image:
#   lower  = the host's / over virtio-9p (tag hostroot), read-only
#   upper  = a tmpfs, so the guest may write anywhere without touching the host
#   share  = the run's folder over virtio-9p (tag jobshare), read-write, mounted at the
#            same path as on the host, so the job's paths mean the same inside
#   data   = the data disk (virtio-blk, ext4, read-only) at the job's data_dir path
# then switch_root and run the host-written stage-2 script $SHARE/guest-run.sh.
# Kernel command line: deploybench.share=PATH [deploybench.data=PATH] [deploybench.probe=1]
# Every step reports on the console as "DEPLOYBENCH-MARK ..." / "DEPLOYBENCH-ERROR ...";
# the host timestamps these lines. Any failure powers the guest off at once (never hangs).
/bin/busybox mkdir -p /bin /proc /sys /dev
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
echo "DEPLOYBENCH-MARK init"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

fail() {
    echo "DEPLOYBENCH-ERROR $*"
    echo o > /proc/sysrq-trigger
    sleep 60
}

for m in $(cat /modules.order); do
    insmod "/lib/modules/$m" || fail "insmod $m"
done

SHARE=""; DATA=""; PROBE=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        deploybench.share=*) SHARE="${arg#*=}" ;;
        deploybench.data=*) DATA="${arg#*=}" ;;
        deploybench.probe=1) PROBE=1 ;;
    esac
done
if [ -n "$PROBE" ]; then
    echo "DEPLOYBENCH-MARK probe-ok"
    echo o > /proc/sysrq-trigger
    sleep 60
fi

mkdir -p /lower /upper /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=1048576,cache=loose hostroot /lower \
    || fail "mount hostroot (9p)"
mount -t tmpfs -o mode=0755 tmpfs /upper || fail "mount tmpfs"
mkdir -p /upper/data /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work /newroot \
    || fail "mount overlay"
if [ -n "$SHARE" ]; then
    mkdir -p "/newroot$SHARE"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 jobshare "/newroot$SHARE" \
        || fail "mount jobshare (9p) at $SHARE"
fi
if [ -n "$DATA" ]; then
    mkdir -p "/newroot$DATA"
    mount -t ext4 -o ro,noload /dev/vda "/newroot$DATA" || fail "mount data disk /dev/vda at $DATA"
fi
for fs in proc sys dev; do
    mount --move "/$fs" "/newroot/$fs" || fail "move /$fs"
done
[ -n "$SHARE" ] && [ -f "/newroot$SHARE/guest-run.sh" ] || fail "no $SHARE/guest-run.sh"
echo "DEPLOYBENCH-MARK switch-root"
exec switch_root /newroot /bin/sh "$SHARE/guest-run.sh"
fail "switch_root"
