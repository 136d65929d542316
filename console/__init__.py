"""The local console: the Vertex AI console's views of local mode, in the browser (read-only).

    python runner.py console [--port 8095] [--local-dir local]     # or: make console

Modules: address.py (where it serves; light, for the lines that point at it), state.py (reads the local
state into what the pages show, with a note in place of whatever is missing or broken), dag.py (a run's
DAG from its pipeline spec, drawn as SVG), plots.py (the endpoint's metrics over time, in the reports'
style), app.py (the Starlette app and the command line), templates/ (the pages, Jinja2).
"""
