# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The address one inventory host reaches a service on another at; see service_address.yml."""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict, Mapping

from ansible.errors import AnsibleFilterError

WILDCARDS = ("", "0.0.0.0", "::")


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bracket(host: str) -> str:
    return "[%s]" % host if ":" in host and not host.startswith("[") else host


def machine(host_vars: Mapping[str, Any]) -> str:
    """Which machine an inventory host is: 'local' (the controller) or its SSH address and port.

    A local connection, or a loopback address on the default SSH port, is the
    controller; a loopback address on another port is a forwarded guest (a VM).
    """
    if host_vars.get("ansible_connection") == "local":
        return "local"
    address = str(host_vars.get("ansible_host") or host_vars.get("inventory_hostname", ""))
    port = host_vars.get("ansible_port")
    if _is_loopback(address) and port in (None, "", 22, "22"):
        return "local"
    return "%s:%s" % (address, port if port not in (None, "") else 22)


def service_address(
    service_vars: Mapping[str, Any],
    client_vars: Mapping[str, Any],
    bind_host: Any,
    port: Any,
    what: str = "the service",
) -> str:
    """HOST:PORT at which the client host reaches a service bound to bind_host:port.

    On the same machine: the bound address, loopback for a wildcard. On
    another: the bound address, or the service host's ansible_host for a
    wildcard. Fails when the client cannot reach it: a service bound to
    loopback, or a wildcard service whose host is known only by a loopback
    (port-forwarded) address.
    """
    bind_host = "" if bind_host is None else str(bind_host)
    try:
        port_number = int(port)
    except (TypeError, ValueError):
        raise AnsibleFilterError(
            "service_address: port must be a number, got %r" % (port,)
        ) from None
    if not 1 <= port_number <= 65535:
        raise AnsibleFilterError("service_address: port must be 1-65535, got %d" % port_number)
    service_name = service_vars.get("inventory_hostname", "?")
    client_name = client_vars.get("inventory_hostname", "?")
    if machine(service_vars) == machine(client_vars):
        if bind_host in WILDCARDS:
            host = "[::1]" if bind_host == "::" else "127.0.0.1"
        else:
            host = _bracket(bind_host)
        return "%s:%d" % (host, port_number)
    if bind_host not in WILDCARDS:
        if _is_loopback(bind_host):
            raise AnsibleFilterError(
                "%s on %s listens on %s only, which %s (another machine) cannot reach: give it an "
                "address %s reaches (reference_service_host), or set the address by hand"
                % (what, service_name, bind_host, client_name, client_name)
            )
        return "%s:%d" % (_bracket(bind_host), port_number)
    address = str(service_vars.get("ansible_host") or service_name)
    if _is_loopback(address):
        raise AnsibleFilterError(
            "%s on %s listens on all addresses, but %s knows %s only as %s (a forwarded port): "
            "set the address %s reaches it at by hand"
            % (what, service_name, client_name, service_name, address, client_name)
        )
    return "%s:%d" % (_bracket(address), port_number)


class FilterModule:
    """Addresses between inventory hosts."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {"service_address": service_address}
