"""vpn_or_hosting_login: logins and signups from VPN, proxy or hosting ranges.

The detector lives beside :mod:`tor_login`, which shares its logic; this module names it.
"""

from __future__ import annotations

from usermon.processor.detectors.tor_login import VPN_KIND as KIND
from usermon.processor.detectors.tor_login import VpnOrHostingLoginDetector

__all__ = ["KIND", "VpnOrHostingLoginDetector"]
