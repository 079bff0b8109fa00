#!/usr/bin/env bash
# Build the Debian 12 disk image the molecule scenarios boot: an MBR disk with
# one ext4 partition and GRUB in the boot gap, so that a changed kernel command
# line really takes effect on reboot. The image is cached under CACHE_DIR and
# named by a hash of this directory: it is rebuilt only when the recipe changes.
#
#   build-image.sh            print the cached image's path, building it if missing
#   build-image.sh --path     print the path the recipe maps to, build nothing
#
# Needs root (or sudo) for mmdebstrap and for file ownership in the filesystem;
# no loop device or mount is used.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
CACHE_DIR=${TESTBED_CACHE_DIR:-$repo/.cache/testbed}
MIRROR=${TESTBED_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
DISK_SIZE_MIB=4096
PART_START_SECTOR=2048

# What the roles and their tests need in the guest; keep it lean, every
# package costs build time in CI. python3-apt: Ansible's apt module installs
# it when missing and then re-executes itself, which it cannot do under the
# Mitogen strategy the scenarios run with (tests/testbed/strategy/).
# ca-certificates: on nearly every real host, absent from minbase; python3-venv
# needs it (through python3-pip-whl), and its postinst (a process per CA) was
# a visible part of the 17 minutes the service's package step took in one
# integration run under TCG, on a busy host.
PACKAGES=(
  systemd systemd-sysv udev dbus kmod
  linux-image-amd64 initramfs-tools grub-pc
  openssh-server python3 python3-apt sudo ca-certificates
  iproute2 ethtool procps util-linux numactl irqbalance linux-cpupower
  hwloc-nox rt-tests
)

# Kernel modules no QEMU guest loads: half the image's size.
MODULE_EXCLUDES=()
for dir in drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband \
  drivers/ata drivers/staging drivers/bluetooth drivers/iio drivers/isdn drivers/scsi drivers/usb \
  drivers/input/touchscreen drivers/hid drivers/mmc drivers/mtd sound net/bluetooth \
  net/mac80211 net/wireless fs/ocfs2 fs/gfs2 fs/btrfs fs/xfs; do
  MODULE_EXCLUDES+=(--dpkgopt="path-exclude=/lib/modules/*/kernel/$dir/*")
done

recipe_hash() {
  (cd "$here" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
    sha256sum | cut -c1-16
}

image="$CACHE_DIR/debian12-$(recipe_hash).qcow2"
if [[ ${1:-} == --path ]]; then
  echo "$image"
  exit 0
fi
if [[ -f $image ]]; then
  echo "$image"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  exec sudo --preserve-env=TESTBED_CACHE_DIR,TESTBED_MIRROR "$0" "$@"
fi

mkdir -p "$CACHE_DIR/debs"
exec 9>"$CACHE_DIR/.build.lock"
flock 9
if [[ -f $image ]]; then # another build finished while we waited
  echo "$image"
  exit 0
fi

work=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
uuid=$(cat /proc/sys/kernel/random/uuid)
start=$SECONDS

log() { echo "build-image: [$((SECONDS - start))s] $*" >&2; }

log "mmdebstrap $SUITE from $MIRROR"
include=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --mode=root --variant=minbase --include="$include" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='force-unsafe-io' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "${MODULE_EXCLUDES[@]}" \
  --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
  --setup-hook="cp -rT $here/rootfs \"\$1\"" \
  --setup-hook="find $CACHE_DIR/debs -name '*.deb' -exec cp -t \"\$1/var/cache/apt/archives/\" {} +" \
  --essential-hook='echo "grub-pc grub-pc/install_devices_empty boolean true" | chroot "$1" debconf-set-selections' \
  --customize-hook="find \"\$1/var/cache/apt/archives\" -name '*.deb' -exec cp -t $CACHE_DIR/debs/ {} +" \
  --customize-hook="cp -rT $here/rootfs \"\$1\"" \
  --customize-hook="$here/customize.sh \"\$1\" $uuid $work/core.img" \
  "$SUITE" "$rootfs" "$MIRROR" >&2

log "filesystem and disk"
disk=$work/disk.raw
truncate -s "${DISK_SIZE_MIB}M" "$disk"
parted --script "$disk" mklabel msdos mkpart primary ext4 "${PART_START_SECTOR}s" 100% set 1 boot on
fs_blocks=$(((DISK_SIZE_MIB * 1024 * 1024 - PART_START_SECTOR * 512) / 4096))
mkfs.ext4 -q -F -L root -U "$uuid" -b 4096 -d "$rootfs" \
  -E "offset=$((PART_START_SECTOR * 512))" "$disk" "$fs_blocks"

# What grub-install does for a BIOS disk, without needing the disk as a block
# device: boot.img in the MBR (up to the partition table), core.img right after.
dd if="$rootfs/usr/lib/grub/i386-pc/boot.img" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none

log "qcow2"
qemu-img convert -O qcow2 "$disk" "$work/image.qcow2"
find "$CACHE_DIR" -maxdepth 1 -name 'debian12-*.qcow2' -delete
mv "$work/image.qcow2" "$image"
log "done: $image ($(du -h "$image" | cut -f1))"
echo "$image"
