"""The Ray edge: one short module per actor or deployment, each a thin shell over `whatsray/`.

Names, namespaces and options are not chosen here: `serve_app.py` (the composition root) applies
them. Each actor serves its methods directly (`handle.record_inbound.remote(event)`), and the
Ray-free code reaches an actor through a typed client (`actors.clients`) that implements the
protocol it takes, and counts each call.
"""
