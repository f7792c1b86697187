"""The desk's web portal (SPEC §6): customers' accounts and requests, later
the agents' workspace. ``portal`` is the frame (application, requests,
rendering, errors), ``accounts`` and ``home`` the pages, ``server`` runs it
in processes of its own."""
