"""Running the pipeline on one machine: the local Functions host, the CLI, the demo and its
world, the API simulator, the HTML report and the local HTTP server.

Never imported by `function_app.py`, `functions/` or anything else under `shared/` (the
layer check in `make lint` says so): nothing here is loaded on Azure.
"""
