"""Views of the HTTP server beyond its core endpoints: the status page, per-site pages and the
history API. `status_page` renders HTML (pure: data and `now` in, text out); `pages` wires the
routes to the daemon's live state and history."""
