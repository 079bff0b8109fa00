"""Read the guest's huge pages back after the hugepages role and its reboot."""

from __future__ import annotations

import re

NODE_PAGES = "/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/nr_hugepages"


def read(host, path: str) -> str:
    return host.file(path).content_string.strip()


def test_boot_arguments_live(host):
    cmdline = read(host, "/proc/cmdline").split()
    assert "hugepagesz=2M" in cmdline
    assert "hugepages=16" in cmdline
    assert cmdline.index("hugepagesz=2M") < cmdline.index("hugepages=16")


def test_pages_per_node_after_reboot(host):
    assert read(host, NODE_PAGES.format(node=0)) == "64"
    assert read(host, NODE_PAGES.format(node=1)) == "32"
    meminfo = read(host, "/proc/meminfo")
    assert re.search(r"^HugePages_Total:\s+96$", meminfo, re.MULTILINE)


def test_hugetlbfs_mounted_for_the_service(host):
    mount = host.mount_point("/dev/hugepages-lowlatency")
    assert mount.exists
    assert mount.filesystem == "hugetlbfs"
    assert "pagesize=2M" in mount.options
    assert host.file("/dev/hugepages-lowlatency").mode == 0o1770


def test_a_file_in_the_mount_takes_huge_pages(host):
    free = "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/free_hugepages"
    script = (
        "import mmap, os;"
        "fd = os.open('/dev/hugepages-lowlatency/probe', os.O_CREAT | os.O_RDWR, 0o600);"
        "os.ftruncate(fd, 2 * 1024 * 1024);"  # mmap cannot map past a file's end
        "m = mmap.mmap(fd, 2 * 1024 * 1024);"
        "m[0] = 1;"
        f"print(sum(int(open('{free}' % n).read()) for n in (0, 1)));"
        "m.close(); os.close(fd); os.unlink('/dev/hugepages-lowlatency/probe')"
    )
    assert int(host.check_output(f'python3 -c "{script}"')) == 95
