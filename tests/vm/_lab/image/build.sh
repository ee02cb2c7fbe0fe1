#!/bin/bash
# Builds the lab's Debian guest into OUTDIR (an empty directory): disk.raw (ext4 root, no
# partition table: root=/dev/vda), vmlinuz and initrd.img from the guest's own kernel package.
# Run by tests/vm/_lab/image.ts, which passes the inputs it hashes for the cache key:
#
#   LAB_SUITE=bookworm LAB_MIRROR=... LAB_SECURITY_MIRROR=... LAB_PACKAGES="a b c" \
#   LAB_HOSTNAME=... LAB_DISK_SIZE=4G build.sh OUTDIR ROOTFS_OVERLAY
#
# The root is built in OUTDIR/root and removed at the end (mmdebstrap unmounts what it mounted
# there; the caller checks that nothing is left mounted before it deletes anything).
set -euo pipefail

: "${LAB_SUITE:?}" "${LAB_MIRROR:?}" "${LAB_SECURITY_MIRROR:?}" "${LAB_PACKAGES:?}"
: "${LAB_HOSTNAME:?}" "${LAB_DISK_SIZE:?}"

step() { printf '[image %(%T)T] %s\n' -1 "$*"; }

# configure ROOT: the lab's settings, run by mmdebstrap as a customize hook (with /proc, /sys and
# /dev mounted in ROOT, which update-initramfs needs).
configure() {
  local root=$1
  cp -a "$LAB_OVERLAY/." "$root/"
  chown -R root:root "$root/etc/systemd" "$root/root"
  echo "$LAB_HOSTNAME" >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$LAB_HOSTNAME" >"$root/etc/hosts"
  printf '/dev/vda\t/\text4\trw,relatime,errors=remount-ro\t0\t1\n' >"$root/etc/fstab"
  # Root logs in without a password on the consoles (a throwaway test guest).
  chroot "$root" passwd -dq root
  mkdir -p "$root/var/log/journal"
  # hvc0 and hvc1 are the lab's command and rescue consoles: systemd starts no getty there by
  # itself.
  systemctl --root="$root" enable serial-getty@hvc0.service serial-getty@hvc1.service \
    systemd-networkd.service
  # Nothing may hold the boot up or run unasked during a test (TCG makes every job slow).
  systemctl --root="$root" mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer \
    dpkg-db-backup.timer logrotate.timer
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  # A fresh machine id on first boot, as on any image.
  : >"$root/etc/machine-id"
  # The small initramfs of rootfs/etc/initramfs-tools.
  chroot "$root" update-initramfs -u -k all
}

if [ "${1:-}" = --configure ]; then
  configure "$2"
  exit 0
fi

out=$1
root=$out/root
export LAB_OVERLAY=$2 LAB_SCRIPT=$0

step "mmdebstrap $LAB_SUITE"
mkdir "$root"
# Documentation and man pages are not needed in the lab and make the image smaller.
mmdebstrap --variant=minbase --mode=root --format=directory \
  --include="${LAB_PACKAGES// /,}" \
  --aptopt='Acquire::Retries "5"' \
  --customize-hook='bash "$LAB_SCRIPT" --configure "$1"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  "$LAB_SUITE" "$root" \
  "deb $LAB_MIRROR $LAB_SUITE main" \
  "deb $LAB_MIRROR $LAB_SUITE-updates main" \
  "deb $LAB_SECURITY_MIRROR $LAB_SUITE-security main"

step "kernel and initrd"
vmlinuz=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
[ -n "$vmlinuz" ] && [ -n "$initrd" ] || { echo "no kernel or initrd in $root/boot" >&2; exit 1; }
cp "$vmlinuz" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"

step "mkfs.ext4 -d ($LAB_DISK_SIZE)"
truncate -s "$LAB_DISK_SIZE" "$out/disk.raw"
mkfs.ext4 -q -L lab-root -d "$root" "$out/disk.raw"
rm -rf --one-file-system "$root"
step "done"
