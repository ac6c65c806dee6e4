#!/bin/sh
# k8slab-seed: apply this VM's own settings (hostname, address, ssh keys) from its read-only seed disk.
# The host writes the disk at vm-up (scripts/machines/render.ts seedFiles); it is applied at every boot.
set -eu
# The seed is the second virtio disk. The kernel names it vdb long before udev has read its
# label, and waiting for udev would put udev's coldplug on the path to sshd.
dev=/dev/vdb
mnt=/run/k8slab-seed
mkdir -p "$mnt"
mount -o ro "$dev" "$mnt"
trap 'umount "$mnt"' EXIT
if [ ! -f "$mnt/fs/etc/k8slab/machine.json" ]; then
  echo "k8slab-seed: $dev is not a k8slab seed disk (no fs/etc/k8slab/machine.json)" >&2
  exit 1
fi
cp -a "$mnt/fs/." /
# systemd read /etc/hostname before this ran; set the running hostname too.
cat /etc/hostname > /proc/sys/kernel/hostname
echo "k8slab-seed: applied $(cat /etc/hostname) $(sed -n 's/^Address=//p' /etc/systemd/network/10-k8slab-lan.network)"
