"""The web dashboard that ``usermon serve`` serves at ``/``: server-rendered pages over the store.

This package owns the pages a person reads (overview, findings, users, sources, decisions: where
a person blocks, unblocks and allowlists, :mod:`.decisions`), their sign-in
(:mod:`.auth`), their charts (:mod:`.charts`, SVG drawn here) and their assets (``templates/``,
``static/``, shipped in the wheel). Pages read through the same parts as the JSON API
(:class:`~usermon.processor.profiles.Profiles`, :func:`~usermon.processor.queries.find_user`,
the store's ``findings``), under the processor's lock in a worker thread. Every response carries
a strict Content-Security-Policy: the one script is ``static/dashboard.js``, which turns times
into the viewer's zone and adds new findings without a reload. docs/dashboard.md explains it.
"""

from __future__ import annotations

from usermon.processor.dashboard.views import NAV, routes

__all__ = ["NAV", "routes"]
