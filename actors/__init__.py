"""The Ray edge: one short module per actor or deployment, each a thin shell over `whatsray/`.

Names, namespaces and options are not chosen here: `serve_app.py` (the composition root) applies
them. Actors talk to each other through `ActorProxy`, which makes a handle look like the plain
object it wraps, so the Ray-free pipeline code runs unchanged on either side.
"""
