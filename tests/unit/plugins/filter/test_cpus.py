from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lowlatency.tuning.plugins.filter import cpus
from ansible_collections.lowlatency.tuning.plugins.filter.cpus import (
    cpulist_difference,
    cpulist_intersect,
    cpulist_to_list,
    cpulist_to_mask,
    cpulist_union,
    list_to_cpulist,
    mask_to_cpulist,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", [0]),
        ("0-3,8", [0, 1, 2, 3, 8]),
        (" 2-5 , 8\n", [2, 3, 4, 5, 8]),
        ("8,0-1,1", [0, 1, 8]),
        ("0-7:2/4", [0, 1, 4, 5]),
        ("0-6:2/4", [0, 1, 4, 5]),
        (3, [3]),
        ([3, 1, 1], [1, 3]),
        ("63-64", [63, 64]),
    ],
)
def test_cpulist_to_list(text, expected):
    assert cpulist_to_list(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2-", "'2-' is not a CPU number or a range"),
        ("5-3", "range '5-3' ends before it starts"),
        ("x", "'x' is not a CPU number"),
        ("-1", "'-1' is not a CPU number"),
        ("1,,2", "'' is not a CPU number"),
        ("", "empty cpulist"),
        ("   ", "empty cpulist"),
        (None, "empty cpulist"),
        ("0-7:5/4", "0 < used <= group"),
        ([1, -2], "must not be negative"),
        ([1, "a"], "must be integers"),
        (True, "not a boolean"),
    ],
)
def test_cpulist_to_list_bad_input(text, fragment):
    with pytest.raises(AnsibleFilterError, match="cpulist_to_list") as info:
        cpulist_to_list(text)
    assert fragment in str(info.value)


def test_cpulist_to_list_allow_empty():
    assert cpulist_to_list("", allow_empty=True) == []


@pytest.mark.parametrize(
    ("cpus_in", "expected"),
    [
        ([0, 1, 2, 5], "0-2,5"),
        ([5, 2, 1, 0, 1], "0-2,5"),
        ([7], "7"),
        ([], ""),
        ([0, 2, 4], "0,2,4"),
        ([*range(40), 63], "0-39,63"),
    ],
)
def test_list_to_cpulist(cpus_in, expected):
    assert list_to_cpulist(cpus_in) == expected


def test_list_to_cpulist_rejects_string_and_negative():
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        list_to_cpulist("0-3")
    with pytest.raises(AnsibleFilterError, match="must not be negative"):
        list_to_cpulist([0, -1])


@pytest.mark.parametrize(
    ("cpulist", "nr_cpus", "expected"),
    [
        ("2-5", None, "3c"),
        ("0", None, "1"),
        ("0-31", None, "ffffffff"),
        ("", None, "0"),
        ("32", None, "00000001,00000000"),
        ("0-3", 64, "00000000,0000000f"),
        ("0,33,64", None, "00000001,00000002,00000001"),
        ("0-3", 4, "f"),
    ],
)
def test_cpulist_to_mask(cpulist, nr_cpus, expected):
    assert cpulist_to_mask(cpulist, nr_cpus) == expected


def test_cpulist_to_mask_bad_input():
    with pytest.raises(AnsibleFilterError, match="ends before it starts"):
        cpulist_to_mask("5-3")
    with pytest.raises(AnsibleFilterError, match="nr_cpus must be a non-negative integer"):
        cpulist_to_mask("1", -4)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ("3c", "2-5"),
        ("0x3c", "2-5"),
        ("3C\n", "2-5"),
        ("00000001,00000000", "32"),
        ("ffffffff,ffffffff", "0-63"),
        ("1,00000003", "0-1,32"),
        ("00000000,00000000", ""),
        ("0", ""),
    ],
)
def test_mask_to_cpulist(mask, expected):
    assert mask_to_cpulist(mask) == expected


@pytest.mark.parametrize(
    ("mask", "fragment"),
    [
        ("xyz", "'xyz' is not hex digits"),
        ("", "empty mask"),
        ("0x", "empty mask"),
        ("3,", "'' is not hex digits"),
        ("100000000,0", "8 hex digits"),
        ("-3", "is not hex digits"),
    ],
)
def test_mask_to_cpulist_bad_input(mask, fragment):
    with pytest.raises(AnsibleFilterError, match="mask_to_cpulist") as info:
        mask_to_cpulist(mask)
    assert fragment in str(info.value)


@pytest.mark.parametrize("cpulist", ["0", "2-5", "0-3,8-11,40-47", "1,33,65,97", "0-127"])
def test_mask_round_trip(cpulist):
    assert mask_to_cpulist(cpulist_to_mask(cpulist)) == cpulist
    assert mask_to_cpulist(cpulist_to_mask(cpulist, 128)) == cpulist


def test_set_operations():
    assert cpulist_intersect("0-3", "2-5") == "2-3"
    assert cpulist_difference("0-3", "2-5") == "0-1"
    assert cpulist_union("0-3", "6,8") == "0-3,6,8"
    assert cpulist_intersect("0-1", "2-3") == ""
    assert cpulist_difference("0-3", "") == "0-3"
    with pytest.raises(AnsibleFilterError, match="cpulist_union"):
        cpulist_union("0-3", "a")


def test_filter_module_exposes_every_filter():
    names = set(cpus.FilterModule().filters())
    assert names == {
        "cpulist_to_list",
        "list_to_cpulist",
        "cpulist_to_mask",
        "mask_to_cpulist",
        "cpulist_intersect",
        "cpulist_difference",
        "cpulist_union",
    }
