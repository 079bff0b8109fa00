#!/usr/bin/env bash
# mmdebstrap customize hook: turn the chroot into a bootable test guest.
#   customize.sh ROOTFS FS_UUID CORE_IMG_OUT
set -euo pipefail
root=$1
uuid=$2
core_img=$3
in_root() { chroot "$root" "$@"; }

echo testbed >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\ttestbed\n' >"$root/etc/hosts"
printf "UUID=%s\t/\text4\terrors=remount-ro\t0\t0\n" "$uuid" >"$root/etc/fstab"
echo "deb http://deb.debian.org/debian bookworm main" >"$root/etc/apt/sources.list"

# Boot speed: no timers or waits a throwaway VM never needs.
in_root systemctl enable systemd-networkd testbed-authorized-keys.service
in_root systemctl mask systemd-networkd-wait-online.service apt-daily.timer \
  apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
in_root passwd --lock root >/dev/null

# GRUB: serial console, one second menu; the roles edit /etc/default/grub and
# run update-grub in the guest, which regenerates grub.cfg from it.
kver=$(in_root linux-version list | tail -1)
mkdir -p "$root/boot/grub/i386-pc"
cp "$root"/usr/lib/grub/i386-pc/*.mod "$root"/usr/lib/grub/i386-pc/*.lst "$root/boot/grub/i386-pc/"
cat >"$root/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=1
menuentry 'Debian GNU/Linux' {
	insmod part_msdos
	insmod ext2
	search --no-floppy --fs-uuid --set=root $uuid
	linux /boot/vmlinuz-$kver root=UUID=$uuid ro console=ttyS0,115200n8 net.ifnames=0
	initrd /boot/initrd.img-$kver
}
CFG
in_root grub-mkimage -O i386-pc -o /tmp/core.img -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2
mv "$root/tmp/core.img" "$core_img"
