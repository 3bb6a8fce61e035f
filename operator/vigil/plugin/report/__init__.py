"""``kubectl vigil report NAME``: one self-contained HTML page about a model, and its numbers.

- :mod:`.sources` reads what the sidecars counted over a time range: Prometheus
  range queries (the health loop's families and arithmetic, one sliding window
  per step), or the direct source (each sidecar's counters since it started,
  through the API server's pod proxy);
- :mod:`.figures` turns them, the ModelDeployment and its Events into the
  report's numbers (a pure function; the JSON export is exactly these);
- :mod:`.page` draws those numbers as inline SVG in one HTML file that needs
  no network to view.
"""
