"""One module per benchmark scenario; each exposes a ``run_*`` function returning a dict."""
