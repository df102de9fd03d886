"""Which network addresses a download may reach, and connections pinned to the checked address.

A download source is text a user (or a web request to ComfyUI) typed, so a plain URL could
point the server at itself (``http://127.0.0.1:8188/...``), at the LAN, or at a cloud metadata
service (``169.254.169.254``), and a public server could redirect there. By default the hub
refuses every address that is not globally routable: loopback, private, link-local, shared
(CGNAT), reserved, multicast and unspecified. Users who mirror models on their LAN opt in with
the environment variable ``KUBIK_HUB_ALLOW_PRIVATE``: ``1`` allows every non-public address
(multicast and ``0.0.0.0`` stay refused), a comma-separated list of addresses or networks
(``192.168.1.20,10.0.0.0/8``) allows only those.

The check must hold for the connection actually made: a host name is resolved once per request
hop, every address it resolves to is checked, and the connection goes only to the checked
addresses (:class:`PinnedAdapter`), so a DNS answer that changes between check and connect (DNS
rebinding) cannot reach another address. TLS keeps the host name for SNI and certificate
checks, and the ``Host`` header keeps it too.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Iterable

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .errors import HubError

ALLOW_PRIVATE_ENV = "KUBIK_HUB_ALLOW_PRIVATE"
_YES = {"1", "true", "yes", "on", "all"}
_NO = {"", "0", "false", "no", "off"}
# The well-known NAT64 prefix embeds an IPv4 address that must pass the same check.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class PrivateAddressRefused(HubError):
    """A download would reach a loopback, private, link-local or reserved address."""


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address (else ``ip`` itself)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def describe(ip: IPAddress) -> str:
    """A few words saying why an address is not public ("a loopback address" ...)."""
    for attribute, words in (("is_loopback", "a loopback address"),
                             ("is_link_local", "a link-local address"),
                             ("is_multicast", "a multicast address"),
                             ("is_unspecified", "the unspecified address"),
                             ("is_reserved", "a reserved address"),
                             ("is_private", "a private address")):
        if getattr(ip, attribute):
            return words
    return "not a public address"


class AddressPolicy:
    """Which IP addresses the hub may connect to outside the configured hubs."""

    def __init__(self, allow_all_private: bool = False, networks: Iterable[str] = ()):
        self.allow_all_private = allow_all_private
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    @classmethod
    def from_setting(cls, value: str | None) -> "AddressPolicy":
        """Read ``KUBIK_HUB_ALLOW_PRIVATE``: empty/0 (default), 1, or addresses/networks."""
        text = (value or "").strip()
        if text.lower() in _NO:
            return cls()
        if text.lower() in _YES:
            return cls(allow_all_private=True)
        networks = []
        for item in (part.strip() for part in text.split(",")):
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{ALLOW_PRIVATE_ENV}: {item[:60]!r} is neither 1 nor an address "
                                 "or network such as 192.168.1.20 or 192.168.1.0/24") from None
        return cls(networks=networks)

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` may not be reached (a few words), or None when it may."""
        inner = _embedded_ipv4(ip)
        if inner.is_multicast or inner.is_unspecified:
            return describe(inner)
        if inner.is_global:
            return None
        if self.allow_all_private or any(inner in net or ip in net for net in self.networks):
            return None
        return describe(inner)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the system's preferred order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_addresses(host: str, port: int, policy: AddressPolicy,
                      resolve: Resolver) -> tuple[str, ...]:
    """Resolve ``host`` once and return the addresses to connect to, after checking every one.

    Raises PrivateAddressRefused when any address is refused (a name that resolves to a public
    and a private address is refused too: which one a client uses is not ours to choose), and
    OSError when the name does not resolve.
    """
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port)]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for ip in addresses:
        reason = policy.refusal(ip)
        if reason is not None:
            shown = host if str(ip) == host.strip("[]") else f"{host} ({ip})"
            raise PrivateAddressRefused(
                f"{shown} is {reason}; the hub refuses loopback, private, link-local and "
                f"reserved addresses unless {ALLOW_PRIVATE_ENV}=1 is set (or "
                f"{ALLOW_PRIVATE_ENV}=<address or network>, e.g. 192.168.1.0/24, to allow a LAN "
                "mirror)")
    return tuple(dict.fromkeys(str(ip) for ip in addresses))


def _pinned_connection(base: type, addresses: tuple[str, ...]) -> type:
    """A urllib3 connection class that opens its socket to one of ``addresses`` (in order).

    urllib3 connects to ``_dns_host`` (the URL's host) and uses ``host`` for TLS SNI, the
    certificate check and the Host header; swapping ``_dns_host`` only while the socket is
    opened sends the TCP connection to a checked address and leaves the rest on the name.
    """
    class Pinned(base):
        def _new_conn(self):
            name = self._dns_host
            failure = None
            try:
                for address in addresses:
                    self._dns_host = address
                    try:
                        return super()._new_conn()
                    except (NewConnectionError, ConnectTimeoutError) as exc:
                        failure = exc
            finally:
                self._dns_host = name
            raise failure

    Pinned.__name__ = f"Pinned{base.__name__}"
    return Pinned


class PinnedAdapter(HTTPAdapter):
    """A requests transport adapter whose connections go only to the checked addresses."""

    def __init__(self, addresses: tuple[str, ...]):
        self.addresses = tuple(addresses)
        super().__init__(max_retries=0)   # HubSession does its own retries

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        http_pool = type("PinnedHTTPConnectionPool", (HTTPConnectionPool,),
                         {"ConnectionCls": _pinned_connection(HTTPConnection, self.addresses)})
        https_pool = type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": _pinned_connection(HTTPSConnection, self.addresses)})
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
